"""`call` and `send` take envelopes, not messages, refs or constructors."""

from __future__ import annotations

from examples.bank.account import AccountId, Deposit
from examples.bank.refs import account
from examples.counter.counter import CounterId, Increment
from examples.counter.refs import counter
from pachytype import Ecosystem


async def misuse(eco: Ecosystem) -> None:
    c = counter(CounterId("c"))
    await eco.call(Increment())  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Increment"; expected "Envelope[Never]"  # P: Argument of type "Increment" cannot be assigned to parameter "envelope" of type "Envelope[S@call]" in function "call"
    await eco.call(c)  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "CounterRef"; expected "Envelope[Never]"  # P: Argument of type "CounterRef" cannot be assigned to parameter "envelope" of type "Envelope[S@call]" in function "call"
    await eco.call(c.increment)  # E: incompatible type "Callable[[], Envelope[int]]"; expected "Envelope[Never]"  # P: Argument of type "() -> Envelope[int]" cannot be assigned to parameter "envelope" of type "Envelope[S@call]" in function "call"
    await eco.send(Deposit(amount=1))  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "Deposit"; expected "Envelope[Any]"  # P: Argument of type "Deposit" cannot be assigned to parameter "envelopes" of type "Envelope[Any]" in function "send"
    await eco.send(account(AccountId("a")))  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "AccountRef"; expected "Envelope[Any]"  # P: Argument of type "AccountRef" cannot be assigned to parameter "envelopes" of type "Envelope[Any]" in function "send"
    await eco.send([c.increment()])  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "list[Envelope[int]]"; expected "Envelope[Any]"  # P: Argument of type "list[Envelope[int]]" cannot be assigned to parameter "envelopes" of type "Envelope[Any]" in function "send"
    eco.send(c.increment())  # E: Value of type "Coroutine[Any, Any, None]" must be used  # P: Result of async function call is not used; use "await" or assign result to variable
