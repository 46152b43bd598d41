"""`pachytype check PKG_DIR [--no-mypy]`: everything CI should ask of a package.

A thin adapter: runs, in order, the generator's freshness check (`refs.py`
up to date), the schema lock comparison (`codegen.lock`), the purity,
private-name and exhaustiveness lint (`codegen.lint`), then mypy with the
project's settings (the invalid-send guarantee) unless `--no-mypy`. Prints
every problem as `file:line: message` (warnings as `file:line: warning:
message`), then a summary; exits 1 if there was any problem but a warning.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from pachytype._generator import codegen_module


@click.command()
@click.argument("package_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-mypy", is_flag=True, help="Skip the mypy run (the static checks still run).")
def check(package_dir: Path, no_mypy: bool) -> None:
    """Check the package in PACKAGE_DIR: refs.py up to date, pachytype.lock
    matches, init/activate pure, no private construction of envelopes or
    addresses, and (unless --no-mypy) mypy passes. Exits 1 on any problem."""
    problems = static_problems(package_dir)
    for problem in problems:
        click.echo(str(problem))
    failed = any(not p.warning for p in problems)
    if not no_mypy:
        failed = _mypy(package_dir) or failed
    if failed:
        click.echo(f"pachytype check {package_dir}: failed", err=True)
        raise SystemExit(1)
    warnings = sum(1 for p in problems if p.warning)
    plural = "s" if warnings > 1 else ""
    click.echo(
        f"pachytype check {package_dir}: ok"
        + (f" ({warnings} warning{plural})" if warnings else "")
    )


def static_problems(package_dir: Path) -> list[Any]:
    """Every problem short of mypy's, sorted by file and line (`codegen.problems.Problem`s)."""
    api = codegen_module("generate")
    errors = codegen_module("problems")
    locks = codegen_module("lock")
    lint = codegen_module("lint")
    package = codegen_module("package")
    try:
        model = api.scan_package(package_dir)
        generated = api.generate(package_dir)
    except errors.GenerateError as error:
        return list(error.problems)
    found: list[Any] = []
    if not api.is_fresh(generated):
        found.append(
            errors.Problem(
                str(generated.path), 1, f"refs.py is stale: run pachytype generate {package_dir}"
            )
        )
    path = locks.lock_path(package_dir)
    try:
        found.extend(locks.problems(model, locks.read(package_dir), str(path)))
    except locks.LockError as error:
        found.append(error.problem)
    found.extend(lint.lint(model, package.find_package(package_dir).modules))
    return sorted(found)


def _mypy(package_dir: Path) -> bool:
    """Run mypy (the project's config, found from the working directory); True if it failed."""
    click.echo(f"mypy {package_dir}", err=True)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(package_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        click.echo(output)
        return True
    return False
