"""A field of the wrong type, through a ref method or in the message itself."""

from __future__ import annotations

from examples.bank.account import AccountId, Deposit, Transfer
from examples.bank.refs import account
from examples.counter.counter import Add, CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId

c = counter(CounterId("c"))
a = account(AccountId("a"))

c.add(amount="5")  # E: Argument "amount" to "add" of "CounterRef" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['5']" cannot be assigned to parameter "amount" of type "int" in function "add"
c.add("5")  # E: Argument 1 to "add" of "CounterRef" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['5']" cannot be assigned to parameter "amount" of type "int" in function "add"
a.deposit(amount=1.5)  # E: Argument "amount" to "deposit" of "AccountRef" has incompatible type "float"; expected "int"  # P: Argument of type "float" cannot be assigned to parameter "amount" of type "int" in function "deposit"
a.deposit(amount=None)  # E: incompatible type "None"; expected "int"  # P: Argument of type "None" cannot be assigned to parameter "amount" of type "int" in function "deposit"
c.post(Add(amount="5"))  # E: Argument "amount" to "Add" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['5']" cannot be assigned to parameter "amount" of type "int" in function "__init__"
a.post(Deposit(amount=[1]))  # E: Argument "amount" to "Deposit" has incompatible type "list[int]"; expected "int"  # P: Argument of type "list[int]" cannot be assigned to parameter "amount" of type "int" in function "__init__"
a.post(Transfer(amount=1, to=AccountId("b"))).after(5)  # E: Argument 1 to "after" of "Envelope" has incompatible type "int"; expected "timedelta"  # P: Argument of type "Literal[5]" cannot be assigned to parameter "delay" of type "timedelta" in function "after"
refs.ponger(PongerId("b")).ping(n="1", reply_to=refs.pinger(PingerId("a")))  # E: Argument "n" to "ping" of "PongerRef" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['1']" cannot be assigned to parameter "n" of type "int" in function "ping"
refs.pinger(PingerId("a")).serve(opponent=PongerId("b"), rallies=2.0)  # E: Argument "rallies" to "serve" of "PingerRef" has incompatible type "float"; expected "int"  # P: Argument of type "float" cannot be assigned to parameter "rallies" of type "int" in function "serve"
