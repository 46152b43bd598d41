"""The client: starts a rally and counts the pongs it gets back.

No `from __future__ import annotations` here, and the server's id type is
imported only for type checking: annotations naming it are strings.
"""

from typing import TYPE_CHECKING, NewType

from attrs import frozen

from pachytype import Activation, Entity
from tests.golden.ping_pong import refs

if TYPE_CHECKING:
    from pachytype import Address
    from tests.golden.ping_pong.server import Ping, ServerId

ClientId = NewType("ClientId", str)


@frozen
class Start:
    """Ping the server `server`, asking it to answer the client `me`."""

    server: "ServerId"
    me: ClientId


@frozen
class Pong:
    """The server's answer to ping number `n`."""

    n: int


@frozen
class Watch:
    """Note a server's address, narrowed to what accepts pings (`Ping` is a
    type-checking-only import here, as is `Address`)."""

    server: "Address[Ping]"


ClientMsg = Start | Pong | Watch


class Client(Entity[ClientId, ClientMsg, int]):
    """Counts pongs."""

    def init(self, id: ClientId) -> int:
        return 0

    def activate(self, msg: ClientMsg, state: int) -> Activation[int]:
        match msg:
            case Start(server=server, me=me):
                return [refs.server(server).ping(n=1, reply_to=refs.client(me))], state
            case Pong():
                return [], state + 1
            case Watch():
                return [], state + 100
