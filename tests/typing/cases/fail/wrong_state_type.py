"""The wrong state type returned from `activate` or `init`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.bank.account import AccountState, Deposit
from examples.counter.counter import Increment
from examples.counter.refs import counter
from pachytype import Activation, Entity, Envelope


class Counting(Entity[str, Increment, int]):
    def init(self, id: str) -> int:
        return "zero"  # E: Incompatible return value type (got "str", expected "int")  # P: Type "Literal['zero']" is not assignable to return type "int"

    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [], str(state + 1)  # E: Incompatible return value type (got "tuple[list[Envelope[Any] | CancelTimer], str]", expected "tuple[Sequence[Envelope[Any] | CancelTimer], int]")  # P: Type "tuple[list[Envelope[Any] | CancelTimer], str]" is not assignable to return type "Activation[int]"


class Banking(Entity[str, Deposit, AccountState]):
    def init(self, id: str) -> int:  # E: Return type "int" of "init" incompatible with return type "AccountState" in supertype "pachytype._entity.Entity"  # P: Method "init" overrides class "Entity" in an incompatible manner
        return 0

    def activate(self, msg: Deposit, state: AccountState) -> Activation[int]:  # E: Return type "tuple[Sequence[Envelope[Any] | CancelTimer], int]" of "activate" incompatible with return type "tuple[Sequence[Envelope[Any] | CancelTimer], AccountState]" in supertype "pachytype._entity.Entity"  # P: Method "activate" overrides class "Entity" in an incompatible manner
        return [], state.balance + msg.amount


class Sending(Entity[str, Increment, int]):
    def activate(self, msg: Increment, state: int) -> tuple[Sequence[Envelope[Any]], int]:
        return [Increment()], state  # E: List item 0 has incompatible type "Increment"; expected "Envelope[Any]"  # P: Type "tuple[list[Increment], int]" is not assignable to return type "tuple[Sequence[Envelope[Any]], int]"


class Lazy(Entity[str, Increment, int]):
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [counter("c").increment()]  # E: Incompatible return value type (got "list[Envelope[int]]", expected "tuple[Sequence[Envelope[Any] | CancelTimer], int]")  # E: Argument 1 to "counter" has incompatible type "str"; expected "CounterId"  # P: Type "list[Envelope[int]]" is not assignable to return type "Activation[int]"  # P: Argument of type "Literal['c']" cannot be assigned to parameter "id" of type "CounterId" in function "counter"


class Mutating(Entity[str, Deposit, AccountState]):
    def activate(self, msg: Deposit, state: AccountState) -> Activation[AccountState]:
        state.balance += msg.amount  # E: Property "balance" defined in "AccountState" is read-only  # P: Cannot assign to attribute "balance" for class "AccountState"
        return [], state
