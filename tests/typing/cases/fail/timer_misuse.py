"""A `CancelTimer` only goes back from `activate`: it is not an envelope, and
a timer key is a str."""

from __future__ import annotations

from datetime import timedelta

from examples.payments import refs
from examples.payments.order import OrderId
from pachytype import Ecosystem


async def misuse(eco: Ecosystem) -> None:
    order = refs.order(OrderId("o"))
    stop = order.cancel_timer("payment-timeout")
    await eco.send(stop)  # E: Argument 1 to "send" of "Ecosystem" has incompatible type "CancelTimer"; expected "Envelope[Any]"  # P: "CancelTimer" is not assignable to "Envelope[Any]"
    await eco.call(stop)  # E: Argument 1 to "call" of "Ecosystem" has incompatible type "CancelTimer"  # P: "CancelTimer" is not assignable to "Envelope[S@call]"
    stop.after(timedelta(minutes=1))  # E: "CancelTimer" has no attribute "after"  # P: Cannot access attribute "after" for class "CancelTimer"
    order.cancel_timer(3)  # E: Argument 1 to "cancel_timer" of "Address" has incompatible type "int"; expected "str"  # P: Argument of type "Literal[3]" cannot be assigned to parameter "key" of type "str"
    order.payment_timeout().after(timedelta(minutes=1), key=3)  # E: Argument "key" to "after" of "Envelope" has incompatible type "int"; expected "str | None"  # P: Argument of type "Literal[3]" cannot be assigned to parameter "key" of type "str | None"
