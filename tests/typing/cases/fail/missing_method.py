"""A ref method (message) the entity does not have."""

from __future__ import annotations

from examples.bank.account import AccountId
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId

counter(CounterId("c")).ping()  # E: "CounterRef" has no attribute "ping"  # P: Cannot access attribute "ping" for class "CounterRef"
account(AccountId("a")).deposit_all()  # E: "AccountRef" has no attribute "deposit_all"  # P: Cannot access attribute "deposit_all" for class "AccountRef"
refs.pinger(PingerId("a")).ping(n=1, reply_to=refs.pinger(PingerId("a")))  # E: "PingerRef" has no attribute "ping"  # P: Cannot access attribute "ping" for class "PingerRef"
refs.ponger(PongerId("b")).pong(n=1, by=PongerId("b"))  # E: "PongerRef" has no attribute "pong"  # P: Cannot access attribute "pong" for class "PongerRef"
refs.pinger(PingerId("a")).serve(opponent=PongerId("b")).serve()  # E: "Envelope[PingerState]" has no attribute "serve"  # P: Cannot access attribute "serve" for class "Envelope[PingerState]"
