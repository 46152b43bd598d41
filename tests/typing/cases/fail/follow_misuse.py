"""`follow` and `state` need a ref (an address that knows its state type),
and yield that state type."""

from __future__ import annotations

from examples.bank.account import AccountId
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import counter
from examples.ping_pong.ping import Pong
from pachytype import Address, Ecosystem


async def misuse(eco: Ecosystem, reply_to: Address[Pong]) -> None:
    c = counter(CounterId("c"))
    async for state in eco.follow(c):
        state.balance  # E: "int" has no attribute "balance"  # P: Cannot access attribute "balance" for class "int"
    async for s in eco.follow(account(AccountId("a"))):
        s + 1  # E: Unsupported operand types for + ("AccountState" and "int")  # P: Operator "+" not supported for types "AccountState" and "Literal[1]"
    for x in eco.follow(c):  # E: "AsyncIterator[int]" has no attribute "__iter__"; maybe "__aiter__"? (not iterable)  # P: "AsyncIterator[int]" is not iterable
        print(x)
    await eco.follow(c)  # E: Incompatible types in "await" (actual type "AsyncIterator[int]", expected type "Awaitable[Any]")  # P: "AsyncIterator[int]" is not awaitable
    eco.follow(c.increment())  # E: Argument 1 to "follow" of "Ecosystem" has incompatible type "Envelope[int]"; expected "Ref[Any, Never]"  # P: Argument of type "Envelope[int]" cannot be assigned to parameter "ref" of type "Ref[Any, S@follow]" in function "follow"
    await eco.state(reply_to)  # E: Argument 1 to "state" of "Ecosystem" has incompatible type "Address[Pong]"; expected "Ref[Any, Never]"  # P: Argument of type "Address[Pong]" cannot be assigned to parameter "ref" of type "Ref[Any, S@state]" in function "state"
    eco.follow(reply_to)  # E: Argument 1 to "follow" of "Ecosystem" has incompatible type "Address[Pong]"; expected "Ref[Any, Never]"  # P: Argument of type "Address[Pong]" cannot be assigned to parameter "ref" of type "Ref[Any, S@follow]" in function "follow"
