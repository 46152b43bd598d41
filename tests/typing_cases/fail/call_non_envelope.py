"""`call` and `send` take envelopes, not messages, refs or constructors."""

from __future__ import annotations

from examples.bank.account import AccountId, Deposit
from examples.bank.refs import account
from examples.counter.counter import CounterId, Increment
from examples.counter.refs import counter
from pachytype import Ecosystem


async def misuse(eco: Ecosystem) -> None:
    c = counter(CounterId("c"))
    await eco.call(Increment())  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Increment"; expected "Envelope[Never]"
    await eco.call(c)  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "CounterRef"; expected "Envelope[Never]"
    await eco.call(c.increment)  # E: incompatible type "Callable[[], Envelope[int]]"; expected "Envelope[Never]"
    await eco.send(Deposit(amount=1))  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "Deposit"; expected "Envelope[Any]"
    await eco.send(account(AccountId("a")))  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "AccountRef"; expected "Envelope[Any]"
    await eco.send([c.increment()])  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "list[Envelope[int]]"; expected "Envelope[Any]"
    eco.send(c.increment())  # E: Value of type "Coroutine[Any, Any, None]" must be used
