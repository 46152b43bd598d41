"""Keyed timers: `.after(delay, key=...)` and `cancel_timer(key)`, returned
by `activate` (and by an event-sourced entity's `decide`) together with envelopes."""

from __future__ import annotations

from datetime import timedelta

from attrs import evolve

from examples.payments import refs
from examples.payments.order import PAYMENT_TIMEOUT, OrderId, OrderState
from pachytype import Activation, CancelTimer, Decision, Envelope


def deadline(order: OrderId) -> Envelope[OrderState]:
    return refs.order(order).payment_timeout().after(timedelta(minutes=15), key=PAYMENT_TIMEOUT)


def paid(state: OrderState) -> Activation[OrderState]:
    stop: CancelTimer = refs.order(state.id).cancel_timer(PAYMENT_TIMEOUT)
    return [stop, deadline(state.id)], evolve(state, status="paid")


def decided(state: OrderState) -> Decision[str]:
    """An event-sourced entity's `decide` cancels a keyed timer the same way."""
    return [refs.order(state.id).cancel_timer(PAYMENT_TIMEOUT), deadline(state.id)], ["paid"]
