"""Addresses, refs and envelopes built by hand instead of by refs."""

from __future__ import annotations

from typing import Any

from examples.counter.counter import Increment
from examples.counter.refs import CounterRef
from pachytype import Address, Envelope, Ref

Address("counter", "c")  # E: Missing named argument "_key" for "Address"  # P: Argument missing for parameter "_key"
Address("counter", "c", _key=None)  # E: Argument "_key" to "Address" has incompatible type "None"; expected "Never"  # P: Argument of type "None" cannot be assigned to parameter "_key" of type "Never" in function "__init__"
Address[Increment]("counter", "c", _key="key")  # E: Argument "_key" to "Address" has incompatible type "str"; expected "Never"  # P: Argument of type "Literal['key']" cannot be assigned to parameter "_key" of type "Never" in function "__init__"
Ref("counter", "c")  # E: Missing named argument "_key" for "Ref"  # P: Argument missing for parameter "_key"
CounterRef("counter", "c")  # E: Missing named argument "_key" for "CounterRef"  # P: Argument missing for parameter "_key"
Envelope()  # E: Cannot instantiate abstract class "Envelope" with abstract attributes "after", "delay", "message", "timer_key" and "to"  # E: Missing named argument "_key" for "Envelope"  # P: Cannot instantiate abstract class "Envelope"  # P: Argument missing for parameter "_key"


def key() -> Any:
    return object()


Address("counter", "c", _key=key())  # Any is not Never, but mypy lets Any through: the runtime refuses it
