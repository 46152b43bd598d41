"""The Order: placed, paid through the `Payments` worker, cancelled, refunded.

Design note. `Place` asks `Payments` for a charge, with the order's own
address as the reply address (`Address[Charged | ChargeFailed]`), and sets
itself a payment deadline: a keyed timer (`PaymentTimeout` after
`PAY_WITHIN`, key `PAYMENT_TIMEOUT`). Whatever comes first decides:
`Charged` pays the order; `ChargeFailed` fails it; `Cancel` or the deadline
stop waiting. Paying, failing or cancelling cancels the deadline
(`me.cancel_timer(PAYMENT_TIMEOUT)`), so no timeout is left behind.

The races: a timer already due when the cancel commits is delivered anyway
(`pachytype._core.timers`: a due timer is a message on its way), so a
`PaymentTimeout` can still reach a paid order: it is ignored unless the
order is still paying. And a charge can land after the order was cancelled
or timed out (the provider charged, the answer was on its way): such a late
`Charged` is not ignored, or the customer would pay for nothing: the order
asks `Refunds` to give it back. A cancel after payment refunds too.
`charges_seen` counts the `Charged` messages received, so tests can show
each charge is applied exactly once. `exhaust` with `Faults(late=True)`
explores both races (tests/examples/test_payments.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, NewType

from attrs import evolve, frozen

from examples.payments import refs
from pachytype import Activation, Entity, Envelope

OrderId = NewType("OrderId", str)

PAY_WITHIN = timedelta(seconds=60)
"""How long an order waits for its charge before it gives up on it."""

PAYMENT_TIMEOUT = "payment-timeout"
"""The key of the payment deadline's timer (cancelled once the order is decided)."""

Status = Literal["new", "paying", "paid", "failed", "cancelled", "expired", "refunding", "refunded"]


@frozen
class Place:
    """Place the order for `cents`: start paying."""

    cents: int


@frozen
class Cancel:
    """The customer cancels: stop waiting, or refund if paid."""


@frozen
class PaymentTimeout:
    """The payment deadline (sent by the order to itself, delayed)."""


@frozen
class Charged:
    """The provider charged the customer (`charge` is its charge id)."""

    charge: str


@frozen
class ChargeFailed:
    """The charge was refused, or every attempt failed."""

    reason: str


@frozen
class Refunded:
    """The provider gave the money back."""

    refund: str


@frozen
class RefundFailed:
    """Every attempt to refund failed: a person must look."""

    reason: str


OrderMsg = Place | Cancel | PaymentTimeout | Charged | ChargeFailed | Refunded | RefundFailed


@frozen
class OrderState:
    """Where the order is, its charge and refund ids, and how many `Charged`
    answers it received."""

    id: OrderId
    status: Status = "new"
    cents: int = 0
    charge: str | None = None
    refund: str | None = None
    reason: str | None = None
    charges_seen: int = 0


class Order(Entity[OrderId, OrderMsg, OrderState]):
    """One customer order and its money."""

    def init(self, id: OrderId) -> OrderState:
        return OrderState(id=id)

    def activate(self, msg: OrderMsg, state: OrderState) -> Activation[OrderState]:
        me = refs.order(state.id)
        match msg:
            case Place(cents=cents):
                if state.status != "new" or cents <= 0:
                    return [], state
                charge = refs.payments().charge(order=state.id, cents=cents, reply_to=me)
                deadline = me.payment_timeout().after(PAY_WITHIN, key=PAYMENT_TIMEOUT)
                return [charge, deadline], evolve(state, status="paying", cents=cents)
            case Charged(charge=charge):
                seen = evolve(state, charges_seen=state.charges_seen + 1, charge=charge)
                if state.status == "paying":
                    return [me.cancel_timer(PAYMENT_TIMEOUT)], evolve(seen, status="paid")
                if state.status in ("cancelled", "expired"):
                    return [_refund(state, charge)], evolve(seen, status="refunding")
                return [], seen
            case ChargeFailed(reason=reason):
                if state.status != "paying":
                    return [], state
                stop = me.cancel_timer(PAYMENT_TIMEOUT)
                return [stop], evolve(state, status="failed", reason=reason)
            case Cancel():
                if state.status == "paying":
                    return [me.cancel_timer(PAYMENT_TIMEOUT)], evolve(state, status="cancelled")
                if state.status == "paid" and state.charge is not None:
                    return [_refund(state, state.charge)], evolve(state, status="refunding")
                return [], state
            case PaymentTimeout():
                if state.status != "paying":
                    return [], state  # due before it was cancelled: it came anyway
                return [], evolve(state, status="expired")
            case Refunded(refund=refund):
                return [], evolve(state, status="refunded", refund=refund)
            case RefundFailed(reason=reason):
                return [], evolve(state, reason=reason)


def _refund(state: OrderState, charge: str) -> Envelope[object]:
    return refs.refunds().refund(order=state.id, charge=charge, reply_to=refs.order(state.id))
