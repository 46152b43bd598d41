"""The Pinger: serves a rally of pings to a Ponger and records the pongs.

`activate` does not see its entity's id, so `init` keeps it in the state:
the Pinger needs it to give its own address as the reply address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NewType, assert_never

from attrs import evolve, frozen

from examples.ping_pong import refs
from pachytype import Activation, Entity

if TYPE_CHECKING:
    # Only a type here: the two modules import each other, and the Pinger
    # reaches the Ponger through the generated refs at run time.
    from examples.ping_pong.pong import PongerId

PingerId = NewType("PingerId", str)


@frozen
class Serve:
    """Start a rally of `rallies` pings against `opponent`."""

    opponent: PongerId
    rallies: int = 3


@frozen
class Pong:
    """The answer to ping number `n`, from the Ponger `by`."""

    n: int
    by: PongerId


PingerMsg = Serve | Pong


@frozen
class PingerState:
    """Who I am, how long the current rally is, and the pongs received in order."""

    me: PingerId
    rallies: int = 0
    pongs: tuple[int, ...] = ()


class Pinger(Entity[PingerId, PingerMsg, PingerState]):
    """Sends ping 1, and ping n+1 on each pong n, until the rally is played."""

    def init(self, id: PingerId) -> PingerState:
        return PingerState(me=id)

    def activate(self, msg: PingerMsg, state: PingerState) -> Activation[PingerState]:
        match msg:
            case Serve(opponent=opponent, rallies=rallies):
                if rallies < 1:
                    return [], state
                first = refs.ponger(opponent).ping(n=1, reply_to=refs.pinger(state.me))
                return [first], evolve(state, rallies=rallies)
            case Pong(n=n, by=by):
                played = evolve(state, pongs=(*state.pongs, n))
                if n >= state.rallies:
                    return [], played
                return [refs.ponger(by).ping(n=n + 1, reply_to=refs.pinger(state.me))], played
            case _:
                assert_never(msg)
