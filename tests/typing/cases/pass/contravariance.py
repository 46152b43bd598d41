"""Address[M] is contravariant: an address accepting more messages stands in
for one accepting fewer. A Pinger (Serve | Pong) is an Address[Pong]."""

from __future__ import annotations

from examples.ping_pong import refs
from examples.ping_pong.ping import Pinger, PingerId, PingerMsg, PingerState, Pong, Serve
from examples.ping_pong.pong import Ping, PongerId
from pachytype import Address, Envelope, Ref

alice = PingerId("alice")
bob = PongerId("bob")

# The generated ref, and the entity's own address, both accepted as Address[Pong].
ping_1 = refs.ponger(bob).ping(n=1, reply_to=refs.pinger(alice))
ping_2 = refs.ponger(bob).ping(n=2, reply_to=Pinger.address(alice))
message = Ping(n=3, reply_to=refs.pinger(alice))

narrow: Address[Pong] = refs.pinger(alice)
wide: Address[PingerMsg] = refs.pinger(alice)
narrowed_again: Address[Pong] = wide
serve_only: Address[Serve] = Pinger.address(alice)
as_ref: Ref[Pong, object] = refs.pinger(alice)  # the state type is covariant
everyone: list[Address[Pong]] = [refs.pinger(alice), Pinger.address(PingerId("carol"))]


def answer(reply_to: Address[Pong], n: int) -> Envelope[object]:
    """A narrowed address accepts exactly its messages."""
    return reply_to.post(Pong(n=n, by=bob))


answers = [answer(to, 1) for to in everyone]
typed: Envelope[PingerState] = refs.pinger(alice).post(Pong(n=1, by=bob))
