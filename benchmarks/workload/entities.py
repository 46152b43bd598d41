"""A sink that counts, and a pair that plays ping-pong."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Entity


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
