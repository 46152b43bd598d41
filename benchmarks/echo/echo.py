"""`Echo` answers each `Ping` with a `Pong` at once; `Tally` counts the pongs."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Address, Attempt, Entity, Worker


@frozen
class Pong:
    """The answer to ping `n`."""

    n: int


@frozen
class Ping:
    """Ask for pong `n` at `reply_to`."""

    n: int
    reply_to: Address[Pong]


class Tally(Entity[int, Pong, int]):
    """How many pongs arrived."""

    def init(self, id: int) -> int:
        return 0

    def activate(self, msg: Pong, state: int) -> Activation[int]:
        return [], state + 1


class Echo(Worker[Ping, Pong]):
    """No I/O: the figure is the library's round trip."""

    concurrency = 256

    async def perform(self, request: Ping, attempt: Attempt) -> Pong:
        return Pong(request.n)
