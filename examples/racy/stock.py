"""A lost update: clerks restock by reading the stock, then writing back the
sum. Two clerks racing can both read the old value; one update is lost.
`Simulation.exhaust` finds both outcomes and the order that loses one;
`Add` (an increment the stock applies itself) is the fix.
"""

from __future__ import annotations

from typing import NewType, assert_never

from attrs import frozen

from examples.racy import refs
from pachytype import Activation, Address, Entity

ClerkId = NewType("ClerkId", str)


@frozen
class Get:
    """Ask for the current count; the answer goes to `reply_to`."""

    reply_to: Address[Count]


@frozen
class Put:
    """Overwrite the count (racy when computed from an older `Get`)."""

    count: int


@frozen
class Add:
    """Add `amount` to the count (the fix: the stock does the arithmetic)."""

    amount: int


StockMsg = Get | Put | Add


class Stock(Entity[str, StockMsg, int]):
    """How many items are in stock."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: StockMsg, state: int) -> Activation[int]:
        match msg:
            case Get(reply_to=reply_to):
                return [reply_to.post(Count(state))], state
            case Put(count=count):
                return [], count
            case Add(amount=amount):
                return [], state + amount
            case _:
                assert_never(msg)


@frozen
class Restock:
    """Add `amount` to `stock`, by reading it and writing the sum back."""

    stock: Address[Get | Put]
    amount: int


@frozen
class Count:
    """The stock's answer to `Get`."""

    count: int


ClerkMsg = Restock | Count


@frozen
class ClerkState:
    """A clerk's state: who it is, and the restock it is in the middle of."""

    me: ClerkId
    stock: Address[Get | Put] | None = None
    amount: int = 0


class Clerk(Entity[ClerkId, ClerkMsg, ClerkState]):
    """Restocks with read-modify-write: correct alone, racy with company."""

    def init(self, id: ClerkId) -> ClerkState:
        return ClerkState(id)

    def activate(self, msg: ClerkMsg, state: ClerkState) -> Activation[ClerkState]:
        match msg:
            case Restock(stock=stock, amount=amount):
                me = refs.clerk(state.me)
                return [stock.post(Get(reply_to=me))], ClerkState(state.me, stock, amount)
            case Count(count=count):
                if state.stock is None:
                    return [], state
                return [state.stock.post(Put(count + state.amount))], ClerkState(state.me)
            case _:
                assert_never(msg)
