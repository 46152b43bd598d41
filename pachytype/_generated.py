"""Support for generated `refs.py` modules; not for hand-written code.

`pachytype check` flags imports of this module outside generated files.

`DEFAULT` and `given` let a ref method leave a default to attrs: a message
field whose default is not a plain literal (a factory, a mutable value, a
name) gets `= DEFAULT` in the ref's signature, and `given(...)` drops the
arguments still equal to it, so attrs computes that default itself (a fresh
one per message, never shared).
"""

from typing import Any, Final, final

from pachytype._address import make_ref
from pachytype._worker import CONTROL_MESSAGES


@final
class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


# Typed Any so that it is a valid default for a parameter of any type.
DEFAULT: Final[Any] = _Default()
"""Stands for "the message class's own default" in generated signatures."""


def given(**arguments: Any) -> dict[str, Any]:
    """The keyword arguments that are not `DEFAULT`."""
    return {name: value for name, value in arguments.items() if value is not DEFAULT}


WORKER_MESSAGES: Final = CONTROL_MESSAGES
"""The messages every worker entity takes besides its requests (from its runners)."""

__all__ = ["DEFAULT", "WORKER_MESSAGES", "given", "make_ref"]
