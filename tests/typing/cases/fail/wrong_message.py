"""A message of another entity, through a generated ref's or an address's `post`."""

from __future__ import annotations

from examples.bank.account import Account, AccountId, Deposit
from examples.bank.refs import account
from examples.counter.counter import Counter, CounterId, Increment
from examples.counter.refs import counter
from examples.ping_pong import refs
from examples.ping_pong.ping import PingerId, Pong, Serve
from examples.ping_pong.pong import Ping, PongerId
from pachytype import Activation, Address, Entity

c = counter(CounterId("c"))
a = account(AccountId("a"))
pong = Pong(n=1, by=PongerId("b"))

c.post(Increment())  # fine: a counter message
c.post(pong)  # E: Argument 1 to "post" of "Ref" has incompatible type "Pong"; expected "Increment | Add | Reset"  # P: Argument of type "Pong" cannot be assigned to parameter "msg" of type "CounterMsg" in function "post"
a.post(Increment())  # E: incompatible type "Increment"; expected "Deposit | Withdraw | Transfer"  # P: Argument of type "Increment" cannot be assigned to parameter "msg" of type "AccountMsg" in function "post"
Counter.address(CounterId("c")).post(Deposit(amount=1))  # E: incompatible type "Deposit"; expected "Increment | Add | Reset"  # P: Argument of type "Deposit" cannot be assigned to parameter "msg" of type "CounterMsg" in function "post"
Account.address(AccountId("a")).post(Serve(opponent=PongerId("b")))  # E: incompatible type "Serve"  # P: Argument of type "Serve" cannot be assigned to parameter "msg" of type "AccountMsg" in function "post"
refs.ponger(PongerId("b")).post(pong)  # E: incompatible type "Pong"; expected "Ping"  # P: Argument of type "Pong" cannot be assigned to parameter "msg" of type "Ping" in function "post"
refs.pinger(PingerId("p")).post(Ping(n=1, reply_to=refs.pinger(PingerId("p"))))  # E: incompatible type "Ping"; expected "Serve | Pong"  # P: Argument of type "Ping" cannot be assigned to parameter "msg" of type "PingerMsg" in function "post"


def answer(to: Address[Pong]) -> None:
    to.post(Serve(opponent=PongerId("b")))  # E: incompatible type "Serve"; expected "Pong"  # P: Argument of type "Serve" cannot be assigned to parameter "msg" of type "Pong" in function "post"


class Relay(Entity[str, Increment, int]):
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [account(AccountId("a")).post(msg)], state  # E: incompatible type "Increment"; expected "Deposit | Withdraw | Transfer"  # P: Argument of type "Increment" cannot be assigned to parameter "msg" of type "AccountMsg" in function "post"


# Calling the base class's `post` on another entity's ref does not sneak past either.
Address.post(counter(CounterId("c")), pong)  # E: Cannot infer value of type parameter "M_contra" of "post" of "Address"  # P: Type of "post" is partially unknown
