"""The server: answers every ping with a pong to the ping's reply address."""

from __future__ import annotations

from typing import TYPE_CHECKING, NewType

from attrs import frozen

from pachytype import Activation, Entity
from tests.golden.ping_pong import refs
from tests.golden.ping_pong.client import Pong

if TYPE_CHECKING:
    from pachytype import Address

ServerId = NewType("ServerId", str)


@frozen
class Ping:
    """Ping number `n`; answer to `reply_to`, which accepts (at least) pongs."""

    n: int
    reply_to: Address[Pong]


class Server(Entity[ServerId, Ping, int]):
    """Counts pings and answers each."""

    def init(self, id: ServerId) -> int:
        return 0

    def activate(self, msg: Ping, state: int) -> Activation[int]:
        seen = state + 1
        if msg.n > 100:  # a guard, and a use of refs from this module too
            return [refs.server(ServerId("overflow")).ping(n=0, reply_to=msg.reply_to)], seen
        return [msg.reply_to.post(Pong(n=msg.n))], seen
