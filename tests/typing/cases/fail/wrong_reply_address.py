"""A reply address of the wrong entity: only addresses accepting `Pong` fit
`reply_to: Address[Pong]`."""

from __future__ import annotations

from examples.counter.counter import Counter, CounterId, Increment
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId, PingerMsg, Pong, Serve
from examples.ping_pong.pong import Ping, PongerId
from pachytype import Address

bob = refs.ponger(PongerId("bob"))

bob.ping(n=1, reply_to=counter(CounterId("c")))  # E: Argument "reply_to" to "ping" of "PongerRef" has incompatible type "CounterRef"; expected "Address[Pong]"  # P: Argument of type "CounterRef" cannot be assigned to parameter "reply_to" of type "Address[Pong]" in function "ping"
bob.ping(n=1, reply_to=Counter.address(CounterId("c")))  # E: incompatible type "Ref[Increment | Add | Reset, int]"; expected "Address[Pong]"  # P: Argument of type "Ref[CounterMsg, int]" cannot be assigned to parameter "reply_to" of type "Address[Pong]" in function "ping"
bob.ping(n=1, reply_to=bob)  # E: incompatible type "PongerRef"; expected "Address[Pong]"  # P: Argument of type "PongerRef" cannot be assigned to parameter "reply_to" of type "Address[Pong]" in function "ping"
Ping(n=1, reply_to=counter(CounterId("c")))  # E: Argument "reply_to" to "Ping" has incompatible type "CounterRef"; expected "Address[Pong]"  # P: Argument of type "CounterRef" cannot be assigned to parameter "reply_to" of type "Address[Pong]" in function "__init__"


def narrower(serve_only: Address[Serve], pong_only: Address[Pong]) -> None:
    bob.ping(n=1, reply_to=serve_only)  # E: incompatible type "Address[Serve]"; expected "Address[Pong]"  # P: Argument of type "Address[Serve]" cannot be assigned to parameter "reply_to" of type "Address[Pong]" in function "ping"
    wide: Address[PingerMsg] = pong_only  # E: Incompatible types in assignment (expression has type "Address[Pong]", variable has type "Address[Serve | Pong]")  # P: Type "Address[Pong]" is not assignable to declared type "Address[PingerMsg]"
    counted: Address[Increment] = refs.pinger(PingerId("a"))  # E: Incompatible types in assignment (expression has type "PingerRef", variable has type "Address[Increment]")  # P: Type "PingerRef" is not assignable to declared type "Address[Increment]"
    print(wide, counted)
