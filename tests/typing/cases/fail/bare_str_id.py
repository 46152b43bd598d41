"""A bare `str` (or the wrong NewType) where an entity's NewType id is expected."""

from __future__ import annotations

from examples.bank.account import Account, AccountId, Transfer
from examples.bank.refs import account
from examples.counter.counter import Counter, CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId

counter("c1")  # E: Argument 1 to "counter" has incompatible type "str"; expected "CounterId"  # P: Argument of type "Literal['c1']" cannot be assigned to parameter "id" of type "CounterId" in function "counter"
account("alice")  # E: Argument 1 to "account" has incompatible type "str"; expected "AccountId"  # P: Argument of type "Literal['alice']" cannot be assigned to parameter "id" of type "AccountId" in function "account"
Counter.address("c1")  # E: Argument 1 to "address" of "Entity" has incompatible type "str"; expected "CounterId"  # P: Argument of type "Literal['c1']" cannot be assigned to parameter "id" of type "CounterId" in function "address"
Account.address(CounterId("c1"))  # E: incompatible type "CounterId"; expected "AccountId"  # P: Argument of type "CounterId" cannot be assigned to parameter "id" of type "AccountId" in function "address"
account(AccountId("a")).transfer(amount=1, to="bob")  # E: Argument "to" to "transfer" of "AccountRef" has incompatible type "str"; expected "AccountId"  # P: Argument of type "Literal['bob']" cannot be assigned to parameter "to" of type "AccountId" in function "transfer"
Transfer(amount=1, to="bob")  # E: Argument "to" to "Transfer" has incompatible type "str"; expected "AccountId"  # P: Argument of type "Literal['bob']" cannot be assigned to parameter "to" of type "AccountId" in function "__init__"
refs.ponger(PingerId("alice"))  # E: Argument 1 to "ponger" has incompatible type "PingerId"; expected "PongerId"  # P: Argument of type "PingerId" cannot be assigned to parameter "id" of type "PongerId" in function "ponger"
refs.pinger(PingerId("a")).serve(opponent=PingerId("b"))  # E: Argument "opponent" to "serve" of "PingerRef" has incompatible type "PingerId"; expected "PongerId"  # P: Argument of type "PingerId" cannot be assigned to parameter "opponent" of type "PongerId" in function "serve"
