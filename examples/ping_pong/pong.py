"""The Ponger: answers every ping with a pong, sent to the ping's reply address.

The reply address is narrowed, `Address[Pong]`: whoever sent the ping, the
Ponger can only send it a `Pong`.
"""

from __future__ import annotations

from typing import NewType

from attrs import frozen

from examples.ping_pong import ping
from pachytype import Activation, Address, Entity

PongerId = NewType("PongerId", str)


@frozen
class Ping:
    """Ping number `n`; answer it at `reply_to`."""

    n: int
    reply_to: Address[ping.Pong]


@frozen
class PongerState:
    """Who I am and how many pings I answered."""

    me: PongerId
    answered: int = 0


class Ponger(Entity[PongerId, Ping, PongerState]):
    """Answers each ping with a pong of the same number."""

    def init(self, id: PongerId) -> PongerState:
        return PongerState(me=id)

    def activate(self, msg: Ping, state: PongerState) -> Activation[PongerState]:
        reply = msg.reply_to.post(ping.Pong(n=msg.n, by=state.me))
        return [reply], PongerState(state.me, state.answered + 1)
