"""A bare `str` (or the wrong NewType) where an entity's NewType id is expected."""

from __future__ import annotations

from examples.bank.account import Account, AccountId, Transfer
from examples.bank.refs import account
from examples.counter.counter import Counter, CounterId
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId
from examples.ping_pong.pong import PongerId

counter("c1")  # E: Argument 1 to "counter" has incompatible type "str"; expected "CounterId"
account("alice")  # E: Argument 1 to "account" has incompatible type "str"; expected "AccountId"
Counter.address("c1")  # E: Argument 1 to "address" of "Entity" has incompatible type "str"; expected "CounterId"
Account.address(CounterId("c1"))  # E: incompatible type "CounterId"; expected "AccountId"
account(AccountId("a")).transfer(amount=1, to="bob")  # E: Argument "to" to "transfer" of "AccountRef" has incompatible type "str"; expected "AccountId"
Transfer(amount=1, to="bob")  # E: Argument "to" to "Transfer" has incompatible type "str"; expected "AccountId"
refs.ponger(PingerId("alice"))  # E: Argument 1 to "ponger" has incompatible type "PingerId"; expected "PongerId"
refs.pinger(PingerId("a")).serve(opponent=PingerId("b"))  # E: Argument "opponent" to "serve" of "PingerRef" has incompatible type "PingerId"; expected "PongerId"
