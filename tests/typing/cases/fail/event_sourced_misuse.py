"""Event-sourced entities: `decide` returns only the entity's events, and a
stream of a type yields that type's events."""

from __future__ import annotations

from pachytype import Decision, Ecosystem, EventSourced
from tests.events_pkg.cart import Add, Added, Cart, CartState, Removed


class Wrong(EventSourced[str, Add, Added, CartState]):
    def decide(self, msg: Add, state: CartState) -> Decision[Added]:
        return [], [Removed(msg.item)]  # E: List item 0 has incompatible type "Removed"; expected "Added"  # P: Type "tuple[list[Envelope[Any] | CancelTimer], list[Removed]]" is not assignable to return type "Decision[Added]"

    def evolve(self, state: CartState, event: Added) -> CartState:
        return state


async def stream(eco: Ecosystem) -> int:
    async for stored in eco.events_of(Cart):
        return stored.event  # E: Incompatible return value type (got "Added | Removed | CheckedOut", expected "int")  # P: Type "CartEvent" is not assignable to return type "int"
    return 0
