"""A desk collects notes; notes may carry a box's address."""

from __future__ import annotations

from typing import TYPE_CHECKING, NewType

from attrs import frozen

from pachytype import Activation, Address, Entity

if TYPE_CHECKING:
    from tests.codec_pkg.boxes import Empty, Put

NoteId = NewType("NoteId", str)


@frozen
class Note:
    """A note, maybe from a box."""

    text: str
    by: Address[Put | Empty] | None


class Desk(Entity[NoteId, Note, tuple[str, ...]]):
    """Keeps notes in arrival order."""

    def init(self, id: NoteId) -> tuple[str, ...]:
        return ()

    def activate(self, msg: Note, state: tuple[str, ...]) -> Activation[tuple[str, ...]]:
        return [], (*state, msg.text)


@frozen
class Entry:
    """Write `text` at line `at`."""

    at: int
    text: str


class Ledger(Entity[str, Entry, dict[int, str]]):
    """Lines by number: a map with int keys (JSON keys are strings)."""

    def init(self, id: str) -> dict[int, str]:
        return {}

    def activate(self, msg: Entry, state: dict[int, str]) -> Activation[dict[int, str]]:
        return [], {**state, msg.at: msg.text}
