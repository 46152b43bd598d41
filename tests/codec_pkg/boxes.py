"""Entities with int, UUID and attrs-class ids, a union state and nested classes."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, NewType

from attrs import frozen

from pachytype import Activation, Address, Entity

if TYPE_CHECKING:
    # Only a type: the two modules import each other at run time through refs.
    from tests.codec_pkg.desk import Note, NoteId

BoxNo = NewType("BoxNo", int)


@frozen
class Put:
    """Put `item` (optionally labelled) in the box; tell `notify` by a note."""

    item: str
    notify: Address[Note]
    label: str | None = None
    tags: tuple[str, ...] = ()
    weight: float = 1.0
    fragile: bool = False
    desk: NoteId | None = None
    size: tuple[int, int] = (1, 1)


@frozen
class Empty:
    """Take everything out."""


@frozen
class Full:
    """A box with items."""

    items: tuple[str, ...]
    watchers: tuple[Address[Note], ...] = ()


@frozen
class Vacant:
    """A box with nothing in it, since `since`."""

    since: int = 0


class Box(Entity[BoxNo, Put | Empty, Full | Vacant]):
    """Holds items."""

    def init(self, id: BoxNo) -> Full | Vacant:
        return Vacant()

    def activate(self, msg: Put | Empty, state: Full | Vacant) -> Activation[Full | Vacant]:
        match msg:
            case Put(item=item, notify=notify):
                items = state.items if isinstance(state, Full) else ()
                return [notify.post(_note(item))], Full((*items, item))
            case Empty():
                return [], Vacant()


def _note(item: str) -> Note:
    from tests.codec_pkg.desk import Note  # the cycle: imported when needed

    return Note(text=f"put {item}", by=None)


@frozen
class Seal:
    """Seal the crate."""


class Crate(Entity[uuid.UUID, Seal, bool]):
    """A crate is sealed or not."""

    def init(self, id: uuid.UUID) -> bool:
        return False

    def activate(self, msg: Seal, state: bool) -> Activation[bool]:
        return [], True


@frozen
class ShelfId:
    """Shelves are named by aisle and level."""

    aisle: str
    level: int


@frozen
class Label:
    """Write `text` on the shelf."""

    text: str


class Shelf(Entity[ShelfId, Label, str]):
    """A labelled shelf."""

    def init(self, id: ShelfId) -> str:
        return ""

    def activate(self, msg: Label, state: str) -> Activation[str]:
        return [], msg.text
