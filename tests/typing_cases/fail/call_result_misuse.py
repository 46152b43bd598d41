"""A `call` (or `state`) result used as the wrong type."""

from __future__ import annotations

from examples.bank.account import AccountId
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId
from pachytype import Ecosystem


async def misuse(eco: Ecosystem) -> None:
    c = counter(CounterId("c"))
    a = account(AccountId("a"))
    text: str = await eco.call(c.increment())  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Envelope[int]"; expected "Envelope[str]"
    await eco.call(c.increment()) + "!"  # E: Unsupported operand types for + ("int" and "str")
    (await eco.call(a.deposit(amount=1))).balanse  # E: "AccountState" has no attribute "balanse"; maybe "balance"?
    balance: int = await eco.call(a.deposit(amount=1))  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Envelope[AccountState]"; expected "Envelope[int]"
    (await eco.call(refs.pinger(PingerId("p")).serve(opponent=PongerId("q")))).answered  # E: "PingerState" has no attribute "answered"
    (await eco.state(refs.ponger(PongerId("q")))).pongs  # E: "PongerState" has no attribute "pongs"
    len(await eco.state(c))  # E: Argument 1 to "state" of "Ecosystem" has incompatible type "CounterRef"; expected "Ref[Any, Sized]"
    print(text, balance)
