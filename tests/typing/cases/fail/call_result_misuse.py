"""A `call` (or `state`) result used as the wrong type."""

from __future__ import annotations

from datetime import timedelta

from examples.bank.account import AccountId, AccountState
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import REGISTRY as COUNTER_REGISTRY
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId
from pachytype import Ecosystem, Envelope, Simulation


async def misuse(eco: Ecosystem) -> None:
    c = counter(CounterId("c"))
    a = account(AccountId("a"))
    text: str = await eco.call(c.increment())  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Envelope[int]"; expected "Envelope[str]"  # P: Type "int" is not assignable to declared type "str"
    await eco.call(c.increment()) + "!"  # E: Unsupported operand types for + ("int" and "str")  # P: Operator "+" not supported for types "int" and "Literal['!']"
    (await eco.call(a.deposit(amount=1))).balanse  # E: "AccountState" has no attribute "balanse"; maybe "balance"?  # P: Cannot access attribute "balanse" for class "AccountState"
    balance: int = await eco.call(a.deposit(amount=1))  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "Envelope[AccountState]"; expected "Envelope[int]"  # P: Type "AccountState" is not assignable to declared type "int"
    (await eco.call(refs.pinger(PingerId("p")).serve(opponent=PongerId("q")))).answered  # E: "PingerState" has no attribute "answered"  # P: Cannot access attribute "answered" for class "PingerState"
    (await eco.state(refs.ponger(PongerId("q")))).pongs  # E: "PongerState" has no attribute "pongs"  # P: Cannot access attribute "pongs" for class "PongerState"
    len(await eco.state(c))  # E: Argument 1 to "state" of "Ecosystem" has incompatible type "CounterRef"; expected "Ref[Any, Sized]"  # P: Argument of type "int" cannot be assigned to parameter "obj" of type "Sized" in function "len"
    print(text, balance)


def envelopes() -> None:
    c = counter(CounterId("c"))
    wrong: Envelope[str] = c.increment()  # E: Incompatible types in assignment (expression has type "Envelope[int]", variable has type "Envelope[str]")  # P: Type "Envelope[int]" is not assignable to declared type "Envelope[str]"
    later: Envelope[AccountState] = c.increment().after(timedelta(seconds=1))  # E: Incompatible types in assignment (expression has type "Envelope[int]", variable has type "Envelope[AccountState]")  # P: Type "Envelope[int]" is not assignable to declared type "Envelope[AccountState]"
    print(wrong, later)


def simulated() -> None:
    sim = Simulation(COUNTER_REGISTRY)
    sim.state(counter(CounterId("c"))).balance  # E: "int" has no attribute "balance"  # P: Cannot access attribute "balance" for class "int"
    sim.run([counter(CounterId("c")).increment()]).state(account(AccountId("a"))) + 1  # E: Unsupported operand types for + ("AccountState" and "int")  # P: Operator "+" not supported for types "AccountState" and "Literal[1]"
