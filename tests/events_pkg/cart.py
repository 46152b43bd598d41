"""A shopping cart kept as events, and a ledger it tells about checkouts.

`Add` with a quantity of 0 is accepted by `decide` and refused by `evolve`
(a failure in evolve); `Add` to a closed cart is refused by `decide`; a
`Poke` returns an event of another entity's class (not allowed).
"""

from __future__ import annotations

from typing import Any, NewType, assert_never

from attrs import field, frozen

from pachytype import Activation, Decision, Entity, EventSourced, upcast
from tests.events_pkg import refs

CartId = NewType("CartId", str)


class CartClosed(ValueError):
    """An item added after checkout."""


@frozen
class Add:
    item: str
    qty: int = 1


@frozen
class Remove:
    item: str


@frozen
class Checkout:
    pass


@frozen
class Poke:
    pass


CartMsg = Add | Remove | Checkout | Poke


@frozen
class Added:
    item: str
    qty: int


@frozen
class Removed:
    item: str


@frozen
class CheckedOut:
    count: int


CartEvent = Added | Removed | CheckedOut


@frozen
class CartState:
    items: dict[str, int] = field(factory=dict)
    closed: bool = False


class Cart(EventSourced[CartId, CartMsg, CartEvent, CartState]):
    """A cart: items added and removed until checkout."""

    snapshot_every = 3

    def init(self, id: CartId) -> CartState:
        return CartState()

    def decide(self, msg: CartMsg, state: CartState) -> Decision[CartEvent]:
        match msg:
            case Add(item=item, qty=qty):
                if state.closed:
                    raise CartClosed(f"cart is checked out; cannot add {item!r}")
                return [], [Added(item, qty)]
            case Remove(item=item):
                return [], [Removed(item)] if item in state.items else []
            case Checkout():
                count = sum(state.items.values())
                return [refs.ledger(0).record(count=count)], [CheckedOut(count)]
            case Poke():
                return [], [Recorded(1)]  # type: ignore[list-item]
            case _:
                assert_never(msg)

    def evolve(self, state: CartState, event: CartEvent) -> CartState:
        match event:
            case Added(item=item, qty=qty):
                if qty <= 0:
                    raise ValueError(f"quantity must be positive, got {qty}")
                return CartState(
                    {**state.items, item: state.items.get(item, 0) + qty}, state.closed
                )
            case Removed(item=item):
                return CartState({k: v for k, v in state.items.items() if k != item}, state.closed)
            case CheckedOut():
                return CartState(state.items, closed=True)
            case _:
                assert_never(event)

    @upcast(event=Added, from_version=1)
    def _quantity(raw: dict[str, Any]) -> dict[str, Any]:
        return {"qty": 1, **raw}


@frozen
class Record:
    count: int


@frozen
class Recorded:
    count: int


class Ledger(Entity[int, Record, int]):
    """A state-stored entity beside the carts: the items checked out."""

    def init(self, id: int) -> int:
        return 0

    def activate(self, msg: Record, state: int) -> Activation[int]:
        return [], state + msg.count
