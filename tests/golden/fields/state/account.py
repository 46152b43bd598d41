"""The account's state."""

from __future__ import annotations

import enum

from attrs import field, frozen


class Color(enum.Enum):
    """The account's color (clashes by name with `messages.Color`)."""

    GREEN = "green"
    GRAY = "gray"


@frozen
class Entry:
    """One booking."""

    amount: int
    note: str


@frozen
class AccountState:
    """Balance and history."""

    balance: int = 0
    entries: tuple[Entry, ...] = ()
    color: Color = Color.GREEN
    tags: frozenset[str] = field(factory=frozenset)
