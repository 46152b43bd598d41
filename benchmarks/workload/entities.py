"""A sink that counts (state-stored and event-sourced), and a pair that plays ping-pong."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Decision, Entity, EventSourced


@frozen
class Hit:
    """Add `n` to the sink."""

    n: int = 1


class Sink(Entity[int, Hit, int]):
    """Counts hits; ids are ints."""

    def init(self, id: int) -> int:
        return 0

    def activate(self, msg: Hit, state: int) -> Activation[int]:
        return [], state + msg.n


@frozen
class Counted:
    """A sink's count went up by `n`."""

    n: int


class EventSink(EventSourced[int, Hit, Counted, int]):
    """The `Sink`'s work, event-sourced: each hit is a `Counted` event."""

    def init(self, id: int) -> int:
        return 0

    def decide(self, msg: Hit, state: int) -> Decision[Counted]:
        return [], [Counted(msg.n)]

    def evolve(self, state: int, event: Counted) -> int:
        return state + event.n


class Journal(EventSourced[int, Hit, Counted, int]):
    """An event sink that never snapshots: replay reads every event."""

    snapshot_every = 0

    def init(self, id: int) -> int:
        return 0

    def decide(self, msg: Hit, state: int) -> Decision[Counted]:
        return [], [Counted(msg.n)]

    def evolve(self, state: int, event: Counted) -> int:
        return state + event.n


class SnappedJournal(EventSourced[int, Hit, Counted, int]):
    """The same journal with a snapshot every 1,000 events."""

    snapshot_every = 1000

    def init(self, id: int) -> int:
        return 0

    def decide(self, msg: Hit, state: int) -> Decision[Counted]:
        return [], [Counted(msg.n)]

    def evolve(self, state: int, event: Counted) -> int:
        return state + event.n
