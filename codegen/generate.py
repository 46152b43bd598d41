"""The generator's entry points: package directory in, `refs.py` text out.

`generate(directory)` runs the whole pipeline (find files, scan, build the
model, render) and returns what to write and where; `write` and `is_fresh`
are the only functions that touch the output file. Other tools (the schema
lock, `pachytype check`) start from `scan_package`, which gives the model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from attrs import frozen

from .build import build_model
from .model import PackageModel
from .package import REFS_NAME, PackageSource, find_package
from .render import render
from .scan import scan_modules


@frozen
class Generated:
    """The text of a generated module, where it goes, and the model it shows."""

    path: Path
    text: str
    model: PackageModel


def scan_package(directory: Path, output: Path | None = None) -> PackageModel:
    """The model of the package in `directory` (the generated `output` is not read).

    Raises `GenerateError` (with `.problems`) on user mistakes."""
    target = output if output is not None else directory / REFS_NAME
    package = find_package(directory, target)
    return build_model(package, scan_modules(package), generated_module(package, target))


def generate(directory: Path, output: Path | None = None) -> Generated:
    """What `pachytype generate` writes for the package in `directory`."""
    target = output if output is not None else directory / REFS_NAME
    package = find_package(directory, target)
    itself = generated_module(package, target)
    model = build_model(package, scan_modules(package), itself)
    return Generated(target, render(model, first_party_of(package), itself), model)


def generated_module(package: PackageSource, target: Path) -> str:
    """The import name of the generated module, if it is in the package's directory."""
    if target.resolve().parent != package.directory.resolve():
        return ""
    return f"{package.name}.{target.stem}"


def first_party_of(package: PackageSource) -> Callable[[str], bool]:
    """Which top-level modules ruff's isort counts as first party: like ruff
    (`src = ["."]`), those found beside the package's top-level package, in
    its import root. So pachytype itself is third party in a user's project
    and first party in pachytype's own checkout, as ruff sorts them."""
    root = package.directory.resolve()
    for _ in package.name.split("."):
        root = root.parent

    def first_party(top: str) -> bool:
        if top in sys.stdlib_module_names:
            return False
        return (root / top).is_dir() or (root / f"{top}.py").is_file()

    return first_party


def is_fresh(generated: Generated) -> bool:
    """Whether the file on disk already holds exactly `generated.text`."""
    try:
        return generated.path.read_text(encoding="utf-8") == generated.text
    except FileNotFoundError:
        return False


def write(generated: Generated) -> bool:
    """Write the file if its text differs; return whether it changed."""
    if is_fresh(generated):
        return False
    generated.path.parent.mkdir(parents=True, exist_ok=True)
    generated.path.write_text(generated.text, encoding="utf-8")
    return True
