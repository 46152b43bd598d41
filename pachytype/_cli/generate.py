"""`pachytype generate PKG_DIR`: write the package's typed refs and registry.

A thin adapter: the generator (`codegen`, shipped as `pachytype._codegen`)
does the work; this module reads arguments, writes the file, prints
problems as `path:LINE: message` and sets the exit code.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import click

from pachytype._generator import codegen_module


@click.command()
@click.argument("package_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the module (default: PKG_DIR/refs.py).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the file on disk is not what would be written.",
)
def generate(package_dir: Path, output: Path | None, check: bool) -> None:
    """Generate typed refs and the REGISTRY of the entities in PACKAGE_DIR.

    Reads the package statically (it never imports your code) and writes
    PACKAGE_DIR/refs.py. User mistakes are printed as `file:line: message`
    and exit with status 1.
    """
    api = codegen_module("generate")
    problems = codegen_module("problems")
    try:
        generated = api.generate(package_dir, output)
        if check:
            _check(api, generated, package_dir, output)
            return
        changed = api.write(generated)
    except problems.GenerateError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1) from None
    click.echo(f"{'wrote' if changed else 'unchanged'} {generated.path}")
    if not generated.model.entities:
        click.echo(
            f"note: no entities in {package_dir}: an entity is a class deriving from "
            f"pachytype.Entity[Id, Msg, State]",
            err=True,
        )


def _check(api: ModuleType, generated: Any, package_dir: Path, output: Path | None) -> None:
    if not api.is_fresh(generated):
        again = f"{package_dir}" + (f" --output {output}" if output is not None else "")
        click.echo(f"{generated.path} is stale: run `pachytype generate {again}`", err=True)
        raise SystemExit(1)
    click.echo(f"{generated.path} is up to date")
