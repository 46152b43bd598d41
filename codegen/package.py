"""Where a package's modules are: its import name and every `.py` file in it.

The import name comes from the directory layout alone (walk up while
`__init__.py` exists), so the generator never imports user code.
Paths keep the spelling the user gave, so problems point where they typed.
"""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

from .problems import GenerateError, Problem

REFS_NAME = "refs.py"
"""The generated module's file name, beside the package's `__init__.py`."""


@frozen
class ModuleSource:
    """One module of the package: its dotted name and its file."""

    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports in this module are resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@frozen
class PackageSource:
    """A package as files: `examples.counter` in `examples/counter`."""

    name: str
    directory: Path
    modules: tuple[ModuleSource, ...]

    @property
    def command_path(self) -> str:
        """The package directory relative to its import root (`examples/counter`)."""
        return self.name.replace(".", "/")


def package_name(directory: Path) -> str:
    """The import name of the package in `directory` (walk up while `__init__.py` exists)."""
    parts: list[str] = []
    current = directory.resolve()
    while (current / "__init__.py").is_file():
        parts.append(current.name)
        current = current.parent
    return ".".join(reversed(parts))


def find_package(directory: Path, output: Path | None = None) -> PackageSource:
    """Every module of the package in `directory`, except the generated `output`."""
    if not (directory / "__init__.py").is_file():
        raise GenerateError(
            [
                Problem(
                    str(directory),
                    0,
                    "not a package: it has no __init__.py; "
                    "pass the directory of the package that declares your entities",
                )
            ]
        )
    name = package_name(directory)
    skip = (output or directory / REFS_NAME).resolve()
    modules = [
        module
        for path in _python_files(directory)
        if path.resolve() != skip
        for module in [_module(name, directory, path)]
    ]
    return PackageSource(name, directory, tuple(sorted(modules, key=lambda m: m.name)))


def _python_files(directory: Path) -> list[Path]:
    found = [p for p in directory.iterdir() if p.suffix == ".py" and p.is_file()]
    for sub in directory.iterdir():
        if sub.is_dir() and (sub / "__init__.py").is_file():
            found.extend(_python_files(sub))
    return found


def _module(package: str, directory: Path, path: Path) -> ModuleSource:
    relative = path.relative_to(directory).with_suffix("").parts
    is_package = relative[-1] == "__init__"
    parts = relative[:-1] if is_package else relative
    return ModuleSource(".".join((package, *parts)), path, is_package)
