"""A counter entity: increments, adds, resets."""

from __future__ import annotations

from typing import NewType, assert_never

from attrs import frozen

from pachytype import Activation, Entity

CounterId = NewType("CounterId", str)


@frozen
class Increment:
    """Add one."""


@frozen
class Add:
    """Add `amount` (default 1)."""

    amount: int = 1


@frozen
class Reset:
    """Back to zero."""


CounterMsg = Increment | Add | Reset


class Counter(Entity[CounterId, CounterMsg, int]):
    """Counts what it is told to."""

    def init(self, id: CounterId) -> int:
        return 0

    def activate(self, msg: CounterMsg, state: int) -> Activation[int]:
        match msg:
            case Increment():
                return [], state + 1
            case Add(amount=n):
                return [], state + n
            case Reset():
                return [], 0
            case _:
                assert_never(msg)
