"""The workers: the only code of the example that talks to the outside.

`Payments` charges through the provider, `Refunds` refunds. Each sends the
request's idempotency key (`attempt.key`, the same on every retry), so the
provider charges a key once however many times it is asked. A 503, a lost
answer, a stall past `timeout`, a dead worker process: each is an attempt
that failed, retried after a backoff (or after the lease, for a dead
process) up to `max_attempts`; a 402 (declined) is an answer, not a
failure. `give_up` (pure) answers the order when no attempt is left.
"""

from __future__ import annotations

from attrs import frozen

from examples.payments.order import (
    Charged,
    ChargeFailed,
    OrderId,
    Refunded,
    RefundFailed,
)
from examples.payments.provider import ProviderError, post_json
from pachytype import Address, Attempt, Failure, Worker


@frozen
class Charge:
    """Charge `cents` for `order`; the answer goes to `reply_to`."""

    order: OrderId
    cents: int
    reply_to: Address[Charged | ChargeFailed]


@frozen
class Refund:
    """Give back the charge `charge` of `order`."""

    order: OrderId
    charge: str
    reply_to: Address[Refunded | RefundFailed]


class Payments(Worker[Charge, Charged | ChargeFailed]):
    """Charges customers through the provider."""

    max_attempts = 6
    concurrency = 16
    timeout = 2.0  # short, so that a stalled provider is retried soon (seconds)
    lease_margin = 1.0
    backoff = 0.1

    def key(self, request: Charge, seq: int) -> str:
        # A natural key: a second Charge for the same order while the first is
        # pending is the same request; the provider charges an order once.
        return f"charge-{request.order}"

    async def perform(self, request: Charge, attempt: Attempt) -> Charged | ChargeFailed:
        body = {"key": attempt.key, "order": request.order, "cents": request.cents}
        status, answer = await post_json("/charge", body)
        if status == 200:
            return Charged(answer["charge"])
        if status == 402:
            return ChargeFailed(answer["declined"])
        raise ProviderError(f"provider answered {status}: {answer}")

    def give_up(self, request: Charge, failure: Failure) -> Charged | ChargeFailed:
        return ChargeFailed(f"no answer after {failure.attempts} attempts ({failure.error})")


class Refunds(Worker[Refund, Refunded | RefundFailed]):
    """Gives money back through the provider."""

    max_attempts = 10
    timeout = 2.0
    lease_margin = 1.0
    backoff = 0.1

    def key(self, request: Refund, seq: int) -> str:
        return f"refund-{request.charge}"

    async def perform(self, request: Refund, attempt: Attempt) -> Refunded | RefundFailed:
        body = {"key": attempt.key, "charge": request.charge}
        status, answer = await post_json("/refund", body)
        if status != 200:
            raise ProviderError(f"provider answered {status}: {answer}")
        return Refunded(answer["refund"])

    def give_up(self, request: Refund, failure: Failure) -> Refunded | RefundFailed:
        return RefundFailed(f"refund not confirmed after {failure.attempts} attempts")
