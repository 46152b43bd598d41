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


@frozen
class Hello:
    """A greeting carrying a full ref (a generated class), not a narrowed address."""

    client: refs.ClientRef


ServerMsg = Ping | Hello


class Server(Entity[ServerId, ServerMsg, int]):
    """Counts pings and answers each; answers a greeting with a pong 0."""

    def init(self, id: ServerId) -> int:
        return 0

    def activate(self, msg: ServerMsg, state: int) -> Activation[int]:
        match msg:
            case Ping(n=n, reply_to=reply_to) if n > 100:
                return [refs.server(ServerId("overflow")).ping(n=0, reply_to=reply_to)], state
            case Ping(n=n, reply_to=reply_to):
                return [reply_to.post(Pong(n=n))], state + 1
            case Hello(client=client):
                return [client.pong(n=0)], state
