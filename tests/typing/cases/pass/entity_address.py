"""`Entity.address(id)` is a typed `Ref[Msg, State]`, usable like a generated ref."""

from __future__ import annotations

from typing import assert_type

from examples.bank.account import Account, AccountId, AccountMsg, AccountState, Deposit
from examples.counter.counter import Add, Counter, CounterId, CounterMsg, Increment
from pachytype import Address, Ecosystem, Envelope, Ref

c = Counter.address(CounterId("c"))
assert_type(c, Ref[CounterMsg, int])
assert_type(c.post(Increment()), Envelope[int])
assert_type(c.post(Add(amount=2)), Envelope[int])
assert_type(Account.address(AccountId("a")), Ref[AccountMsg, AccountState])
as_address: Address[Increment] = c


async def use(eco: Ecosystem) -> None:
    assert_type(await eco.call(c.post(Add(amount=2))), int)
    assert_type(await eco.state(c), int)
    a = Account.address(AccountId("a"))
    assert_type(await eco.call(a.post(Deposit(amount=3))), AccountState)
    balance: int = (await eco.state(a)).balance
    print(balance)
