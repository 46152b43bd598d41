"""Held entities: state that cannot be loaded never gets overwritten.

When an entity's stored state does not load (a `StateVersionError`: stored
by newer code, or no upgrader; a `DecodeError`: bytes that do not decode),
the entity is *held*: it is not activated, its mail stays stored and
unconsumed in order, `call` and `state` on it raise the load error, and it
is tried again every `RETRY_HELD` seconds (a repaired row or a deploy that
can load it releases it, and its mail is then delivered in order).
"""

from __future__ import annotations

from typing import Final

RETRY_HELD: Final = 30.0
"""Seconds before a held entity's state is read and decoded again."""


class Held:
    """Stands in place of a state that cannot be loaded."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Held({self.error!r})"
