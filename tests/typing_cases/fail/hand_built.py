"""Addresses, refs and envelopes built by hand instead of by refs."""

from __future__ import annotations

from typing import Any

from examples.counter.counter import Increment
from examples.counter.refs import CounterRef
from pachytype import Address, Envelope, Ref

Address("counter", "c")  # E: Missing named argument "_key" for "Address"
Address("counter", "c", _key=None)  # E: Argument "_key" to "Address" has incompatible type "None"; expected "Never"
Address[Increment]("counter", "c", _key="key")  # E: Argument "_key" to "Address" has incompatible type "str"; expected "Never"
Ref("counter", "c")  # E: Missing named argument "_key" for "Ref"
CounterRef("counter", "c")  # E: Missing named argument "_key" for "CounterRef"
Envelope()  # E: Cannot instantiate abstract class "Envelope" with abstract attributes "after", "delay", "message" and "to"  # E: Missing named argument "_key" for "Envelope"


def key() -> Any:
    return object()


Address("counter", "c", _key=key())  # Any is not Never, but mypy lets Any through: the runtime refuses it
