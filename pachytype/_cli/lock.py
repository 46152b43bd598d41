"""`pachytype lock PKG_DIR`: record the shapes of the package's stored data.

A thin adapter over `codegen.lock` (shipped as `pachytype._codegen.lock`):
reads the package statically, merges the current fingerprints into
`PKG_DIR/pachytype.lock` (older state versions are kept) and writes it.
"""

from __future__ import annotations

from pathlib import Path

import click

from pachytype._generator import codegen_module


@click.command()
@click.argument("package_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Record the code as it is even if a locked state version changed shape "
    "(only for data that was never deployed).",
)
def lock(package_dir: Path, force: bool) -> None:
    """Write PACKAGE_DIR/pachytype.lock: per entity and state_version, the
    fingerprint of the state's structure, and of the message union. Commit it;
    `pachytype check` compares the code with it."""
    api = codegen_module("generate")
    locks = codegen_module("lock")
    problems = codegen_module("problems")
    path = locks.lock_path(package_dir)
    try:
        model = api.scan_package(package_dir)
        previous = locks.read(package_dir)
    except problems.GenerateError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1) from None
    except locks.LockError as error:
        click.echo(str(error.problem), err=True)
        raise SystemExit(1) from None
    refused = locks.refusals(model, previous, str(path))
    if refused and not force:
        for problem in refused:
            click.echo(str(problem), err=True)
        click.echo(
            f"{path} not written: fix the problems above (or pass --force if no data of "
            f"those versions was ever stored)",
            err=True,
        )
        raise SystemExit(1)
    text = locks.render(locks.merged(model, previous), model.command_path)
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == text:
        click.echo(f"unchanged {path}")
        return
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}")
