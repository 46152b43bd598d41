"""Scenarios for `pachytype simulate` and `Simulation.exhaust(..., eventually=settled)`:

pachytype simulate examples.booking.scenarios:forgetful --exhaust \\
    --eventually examples.booking.scenarios:settled
"""

from __future__ import annotations

from typing import Any

from examples.booking import refs
from examples.booking.venue import BookingId, VenueId, VenueMsg
from pachytype import Address, Envelope
from pachytype.simulation import Outcome

ANN, BOB = BookingId("ann"), BookingId("bob")


def _rush(venue: Address[VenueMsg]) -> list[Envelope[Any]]:
    """Ann and Bob book the one seat at once; Ann then withdraws."""
    ann, bob = refs.booking(ANN), refs.booking(BOB)
    return [ann.book(venue=venue), bob.book(venue=venue), ann.withdraw()]


def forgetful() -> list[Envelope[Any]]:
    """The rush at the venue that forgets its waiting list."""
    return _rush(refs.forgetful_venue(VenueId("hall")))


def fixed() -> list[Envelope[Any]]:
    """The rush at the venue that hands a freed seat to the first waiting."""
    return _rush(refs.venue(VenueId("hall")))


def settled(outcome: Outcome) -> bool:
    """Eventually no booking is left asking or waiting: each is confirmed or withdrawn."""
    return all(
        outcome.state(refs.booking(who)).status in ("confirmed", "withdrawn")
        for who in (ANN, BOB)
        if refs.booking(who) in outcome.states
    )
