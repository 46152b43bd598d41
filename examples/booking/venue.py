"""Bookings for a venue with one seat, and a waiting list.

A booking asks the venue for the seat (`Reserve`); the venue confirms it if
the seat is free, else puts the booking on its waiting list (`Waitlisted`).
A booking can be withdrawn at any time (`Withdraw`): it tells the venue
(`Cancel`), which frees the seat. The bug: `ForgetfulVenue` frees the seat
and forgets its waiting list, so a waiting booking stays waitlisted forever
though the seat is free. Every order looks fine in a unit test where the
first booking is withdrawn before the second arrives; only some orders
leave someone waiting. `Venue` is the fix: a freed seat goes to the first
booking waiting.
"""

from __future__ import annotations

from typing import Literal, NewType, assert_never

from attrs import evolve, frozen

from examples.booking import refs
from pachytype import Activation, Address, Entity

VenueId = NewType("VenueId", str)
BookingId = NewType("BookingId", str)

Status = Literal["new", "pending", "waitlisted", "confirmed", "withdrawn"]


@frozen
class Confirmed:
    """The venue's answer: the seat is yours."""


@frozen
class Waitlisted:
    """The venue's answer: the seat is taken; you are on the waiting list."""


@frozen
class Reserve:
    """Ask for the seat for booking `who`; the answer goes to `reply_to`."""

    who: BookingId
    reply_to: Address[Confirmed | Waitlisted]


@frozen
class Cancel:
    """Booking `who` is withdrawn: free its seat, or its place in the queue."""

    who: BookingId


VenueMsg = Reserve | Cancel


@frozen
class Waiting:
    """A booking on the waiting list, and where to tell it."""

    who: BookingId
    reply_to: Address[Confirmed | Waitlisted]


@frozen
class VenueState:
    """Who holds the seat (if anyone) and who waits for it, in order."""

    holder: BookingId | None = None
    waiting: tuple[Waiting, ...] = ()


def _reserve(msg: Reserve, state: VenueState) -> Activation[VenueState]:
    if state.holder == msg.who or any(w.who == msg.who for w in state.waiting):
        return [], state  # asked before: the answer is on its way
    if state.holder is None:
        return [msg.reply_to.post(Confirmed())], evolve(state, holder=msg.who)
    waiting = (*state.waiting, Waiting(msg.who, msg.reply_to))
    return [msg.reply_to.post(Waitlisted())], evolve(state, waiting=waiting)


def _unqueue(msg: Cancel, state: VenueState) -> VenueState:
    return evolve(state, waiting=tuple(w for w in state.waiting if w.who != msg.who))


class ForgetfulVenue(Entity[VenueId, VenueMsg, VenueState]):
    """The bug: a cancelled seat is freed, and the waiting list forgotten."""

    def init(self, id: VenueId) -> VenueState:
        return VenueState()

    def activate(self, msg: VenueMsg, state: VenueState) -> Activation[VenueState]:
        match msg:
            case Reserve():
                return _reserve(msg, state)
            case Cancel(who=who):
                if state.holder == who:
                    return [], evolve(state, holder=None)
                return [], _unqueue(msg, state)
            case _:
                assert_never(msg)


class Venue(Entity[VenueId, VenueMsg, VenueState]):
    """The fix: a cancelled seat goes to the first booking waiting."""

    def init(self, id: VenueId) -> VenueState:
        return VenueState()

    def activate(self, msg: VenueMsg, state: VenueState) -> Activation[VenueState]:
        match msg:
            case Reserve():
                return _reserve(msg, state)
            case Cancel(who=who):
                if state.holder != who:
                    return [], _unqueue(msg, state)
                if not state.waiting:
                    return [], evolve(state, holder=None)
                first, *rest = state.waiting
                told = [first.reply_to.post(Confirmed())]
                return told, VenueState(holder=first.who, waiting=tuple(rest))
            case _:
                assert_never(msg)


@frozen
class Book:
    """Ask `venue` for its seat."""

    venue: Address[VenueMsg]


@frozen
class Withdraw:
    """Give the seat (or the place in the queue) up."""


BookingMsg = Book | Withdraw | Confirmed | Waitlisted


@frozen
class BookingState:
    """Where a booking stands."""

    me: BookingId
    status: Status = "new"
    venue: Address[VenueMsg] | None = None


class Booking(Entity[BookingId, BookingMsg, BookingState]):
    """One customer's booking: asks, waits, may withdraw."""

    def init(self, id: BookingId) -> BookingState:
        return BookingState(me=id)

    def activate(self, msg: BookingMsg, state: BookingState) -> Activation[BookingState]:
        match msg:
            case Book(venue=venue):
                ask = venue.post(Reserve(who=state.me, reply_to=refs.booking(state.me)))
                return [ask], evolve(state, status="pending", venue=venue)
            case Withdraw():
                told = [] if state.venue is None else [state.venue.post(Cancel(who=state.me))]
                return told, evolve(state, status="withdrawn")
            case Confirmed():
                if state.status == "withdrawn":
                    return [], state  # the venue frees it when our Cancel arrives
                return [], evolve(state, status="confirmed")
            case Waitlisted():
                if state.status != "pending":
                    return [], state
                return [], evolve(state, status="waitlisted")
            case _:
                assert_never(msg)
