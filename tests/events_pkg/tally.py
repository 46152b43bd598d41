"""A second event-sourced type beside the cart: each type numbers its own
stream positions, and a commit may append events of both."""

from __future__ import annotations

from attrs import frozen

from pachytype import Decision, EventSourced


@frozen
class Count:
    n: int


@frozen
class Counted:
    n: int


class Tally(EventSourced[str, Count, Counted, int]):
    """The sum of what it was told to count."""

    def init(self, id: str) -> int:
        return 0

    def decide(self, msg: Count, state: int) -> Decision[Counted]:
        return [], [Counted(msg.n)]

    def evolve(self, state: int, event: Counted) -> int:
        return state + event.n
