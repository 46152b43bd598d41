"""Event streams: `StoredEvent`, the wake-up `Signal`, the in-memory log and
the tailing loop every ecosystem's `events`/`events_of` runs.

Design note
-----------
Two streams, one rule: *read what is committed after a position, then
wait for the next commit*. An ecosystem supplies a `read(after)` that
returns committed events after a position (in position order, a bounded
batch) and a `Signal` it bumps after each commit that kept events; `tail`
does the rest, so no stream logic is written twice.

* `eco.events(ref, after=n)`: one entity's events, positioned by their
  sequence number in that entity (1, 2, ...): it never changes.
* `eco.events_of(Entity, after=p)`: every entity of a type, positioned by
  the store's log position, in commit order. LocalDisk's positions are
  SQLite rowids assigned by its single writer in commit order, so a reader
  resuming after `p` (after a restart of the reader or of the ecosystem)
  never misses an event and never sees one twice: no gaps. InMemory's are
  indexes in its one list (they do not survive the process, nor does
  anything else of InMemory).

No gap on a wake-up race: `tail` reads the signal's generation *before*
reading, and only sleeps if no commit happened since, so an event committed
between the read and the wait wakes it at once. Streams end when the
ecosystem closes, like `follow`.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

from attrs import frozen

from pachytype._address import Address, Key, Ref

E = TypeVar("E")
T = TypeVar("T")

READ_BATCH = 1000
"""Events read per round trip to the store while catching up."""


@frozen
class StoredEvent(Generic[E]):
    """One committed event: where it is in its stream, whose it is, its place
    in that entity's events (1, 2, ...) and the event itself."""

    position: int
    """The stream position: `after=` this resumes just past it."""
    ref: Ref[Any, Any]
    seq: int
    event: E


class Signal:
    """A counter of commits that kept events, with a way to wait for the next."""

    __slots__ = ("_waiter", "closed", "generation")

    def __init__(self) -> None:
        self.generation = 0
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        """Events were committed: wake the streams waiting."""
        self.generation += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """The ecosystem closed: every stream ends."""
        self.closed = True
        self.notify()

    async def wait(self, generation: int) -> None:
        """Return once the generation moved past `generation` (or at close)."""
        while self.generation == generation and not self.closed:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)


async def tail(
    signal: Signal,
    read: Callable[[int], Awaitable[Sequence[T]]],
    position: Callable[[T], int],
    after: int,
) -> AsyncIterator[T]:
    """What `read(after)` returns, then what later commits add, until close."""
    while not signal.closed:
        generation = signal.generation
        batch = await read(after)
        for item in batch:
            yield item
            after = position(item)
        if not batch:
            await signal.wait(generation)


class MemoryLog:
    """Events kept in process memory (InMemory, the simulation's ecosystem view):
    one list in commit order, indexed by entity and by entity type."""

    def __init__(self) -> None:
        self.signal = Signal()
        self._all: list[StoredEvent[Any]] = []
        self._by_entity: dict[Key, list[StoredEvent[Any]]] = {}
        self._by_type: dict[str, list[StoredEvent[Any]]] = {}

    def count(self, key: Key) -> int:
        """How many events the entity has."""
        kept = self._by_entity.get(key)
        return 0 if kept is None else len(kept)

    def append(self, address: Address[Any], events: Sequence[tuple[int, object]]) -> None:
        """Append `(seq, event)`s of one entity (in order) and wake the streams."""
        ref = cast(Ref[Any, Any], address)  # every address the runtime holds is a Ref
        entity = self._by_entity.setdefault(ref.key, [])
        of_type = self._by_type.setdefault(ref.entity_type, [])
        for seq, event in events:
            stored = StoredEvent(len(self._all) + 1, ref, seq, event)
            self._all.append(stored)
            entity.append(stored)
            of_type.append(stored)
        self.signal.notify()

    def of_entity(self, key: Key, after: int) -> list[tuple[int, object]]:
        """`(seq, event)` of one entity after sequence number `after`."""
        kept = self._by_entity.get(key, [])
        return [(e.seq, e.event) for e in kept[max(after, 0) : max(after, 0) + READ_BATCH]]

    def of_type(self, entity_type: str, after: int) -> list[StoredEvent[Any]]:
        """Events of every entity of a type, after log position `after`."""
        kept = self._by_type.get(entity_type, [])
        start = bisect_right(kept, after, key=lambda e: e.position)
        return kept[start : start + READ_BATCH]
