"""examples/booking: a venue that forgets its waiting list leaves a booking
waiting forever, though the seat is free. `exhaust(..., eventually=settled)`
finds the order that does it and shows its shortest trace; the venue that
hands a freed seat to the first booking waiting settles every booking."""

from __future__ import annotations

import pytest

from examples.booking import refs, scenarios
from examples.booking.venue import (
    Cancel,
    Confirmed,
    Reserve,
    VenueId,
    VenueState,
    Waiting,
    Waitlisted,
)
from pachytype import Simulation
from pachytype.simulation import LivenessError

HALL = VenueId("hall")


def test_the_forgetful_venue_leaves_a_waiting_booking_pending_forever() -> None:
    with pytest.raises(LivenessError) as info:
        Simulation(refs.REGISTRY).exhaust(scenarios.forgetful(), eventually=scenarios.settled)
    error = info.value
    ann, bob = refs.booking(scenarios.ANN), refs.booking(scenarios.BOB)
    venue = refs.forgetful_venue(HALL)
    assert not error.cycle  # the execution ends: nothing more will ever happen
    # The shortest order: Ann gets the seat, Bob is put on the waiting list,
    # Ann withdraws: the seat is freed and nobody tells Bob.
    assert [(s.to, s.message) for s in error.trace][3:] == [
        (venue, Reserve(scenarios.ANN, ann)),
        (venue, Reserve(scenarios.BOB, bob)),
        (venue, Cancel(scenarios.ANN)),
        (ann, Confirmed()),
        (bob, Waitlisted()),
    ]
    assert error.outcome.state(bob).status == "waitlisted"
    assert error.outcome.state(venue) == VenueState(None, (Waiting(scenarios.BOB, bob),))
    text = str(error)
    assert text.startswith(
        "eventually settled does not hold: an execution ends after 8 steps without it\n"
    )
    assert (
        "   6. t=0 <forgetful_venue 'hall'> <- Cancel(who='ann') from <booking 'ann'>: "
        "VenueState(holder: 'ann' -> None)\n"
    ) in text
    assert (
        "   8. t=0 <booking 'bob'> <- Waitlisted() from <forgetful_venue 'hall'>: "
        "BookingState(status: 'pending' -> 'waitlisted')\n"
    ) in text


def test_the_venue_that_hands_over_a_freed_seat_settles_every_booking() -> None:
    report = Simulation(refs.REGISTRY).exhaust(scenarios.fixed(), eventually=scenarios.settled)
    assert report.complete
    bob = refs.booking(scenarios.BOB)
    assert {f.outcome.state(bob).status for f in report.outcomes} == {"confirmed"}
