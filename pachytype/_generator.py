"""Where the generator package is: `pachytype._codegen` when installed from a
wheel (it is shipped inside pachytype so that no top-level `codegen`
distribution can shadow it or be shadowed by it), or the `codegen/`
directory beside `pachytype/` in a source checkout."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType


def codegen_module(name: str = "") -> ModuleType:
    """Import the generator package (or its submodule `name`, e.g. "scan")."""
    suffix = f".{name}" if name else ""
    try:
        return importlib.import_module(f"pachytype._codegen{suffix}")
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("pachytype._codegen"):
            raise
    source = Path(__file__).resolve().parent.parent / "codegen"
    module = importlib.import_module(f"codegen{suffix}")
    origin = Path(module.__file__ or "").resolve()
    if source not in origin.parents:
        raise ImportError(
            f"pachytype's generator was not found (pachytype._codegen) and the "
            f"`codegen` module at {origin} is not pachytype's; reinstall pachytype"
        )
    return module
