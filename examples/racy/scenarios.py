"""Scenarios for `pachytype simulate`:

pachytype simulate examples.racy.scenarios:lost_update --exhaust
pachytype simulate examples.racy.scenarios:with_add --exhaust
"""

from __future__ import annotations

from examples.racy import refs
from examples.racy.stock import ClerkId
from pachytype import Envelope


def lost_update() -> list[Envelope[object]]:
    """Two clerks restock the same shelf at once (5 + 3; 8 expected)."""
    shelf = refs.stock("shelf")
    return [
        refs.clerk(ClerkId("ann")).restock(stock=shelf, amount=5),
        refs.clerk(ClerkId("bob")).restock(stock=shelf, amount=3),
    ]


def with_add() -> list[Envelope[object]]:
    """The fix: the same restocks as increments the stock applies itself."""
    shelf = refs.stock("shelf")
    return [shelf.add(amount=5), shelf.add(amount=3)]
