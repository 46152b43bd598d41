"""A misspelt field or message name."""

from __future__ import annotations

from examples.bank.account import AccountId, Deposit
from examples.bank.refs import account
from examples.counter.counter import CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.pong import PongerId

c = counter(CounterId("c"))
a = account(AccountId("a"))

c.add(amout=5)  # E: Unexpected keyword argument "amout" for "add" of "CounterRef"; did you mean "amount"?  # P: No parameter named "amout"
a.transfer(amount=1, too=AccountId("b"))  # E: Unexpected keyword argument "too" for "transfer" of "AccountRef"; did you mean "to"?  # P: Argument missing for parameter "to"  # P: No parameter named "too"
a.post(Deposit(amout=1))  # E: Unexpected keyword argument "amout" for "Deposit"; did you mean "amount"?  # P: Argument missing for parameter "amount"  # P: No parameter named "amout"
a.deposit()  # E: Missing positional argument "amount" in call to "deposit" of "AccountRef"  # P: Argument missing for parameter "amount"
refs.ponger(PongerId("b")).ping(n=1)  # E: Missing positional argument "reply_to" in call to "ping" of "PongerRef"  # P: Argument missing for parameter "reply_to"
