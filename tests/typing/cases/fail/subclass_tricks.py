"""Subclassing `Address` or `Envelope` to forge what only refs may build."""

from __future__ import annotations

from datetime import timedelta

from examples.counter.counter import Increment
from pachytype import Address, Ecosystem, Envelope


class ForgedAddress(Address[Increment]):
    def __init__(self) -> None:  # E: Cannot override final attribute "__init__"  # P: Method "__init__" cannot override final method defined in class "Address"
        pass


class ForgedEnvelope(Envelope[int]):
    def __init__(self) -> None:  # E: Cannot override final attribute "__init__"  # P: Method "__init__" cannot override final method defined in class "Envelope"
        pass

    @property
    def to(self) -> Address[Increment]:
        return ForgedAddress()

    @property
    def message(self) -> object:
        return Increment()

    @property
    def delay(self) -> timedelta:
        return timedelta()

    @property
    def timer_key(self) -> str | None:
        return None

    def after(self, delay: timedelta, *, key: str | None = None) -> Envelope[int]:
        return self


class Wrapped(Address[Increment]):
    pass


async def forge(eco: Ecosystem) -> None:
    Wrapped("counter", "c")  # E: Missing named argument "_key" for "Wrapped"  # P: Argument missing for parameter "_key"
    print(await eco.call(ForgedEnvelope()))


class QuietEnvelope(Envelope[int]):
    """Keeps Envelope's __init__ but cannot satisfy its key."""

    @property
    def to(self) -> Address[Increment]:
        return Wrapped("counter", "c")  # E: Missing named argument "_key" for "Wrapped"  # P: Argument missing for parameter "_key"

    @property
    def message(self) -> object:
        return Increment()

    @property
    def delay(self) -> timedelta:
        return timedelta()

    @property
    def timer_key(self) -> str | None:
        return None

    def after(self, delay: timedelta, *, key: str | None = None) -> Envelope[int]:
        return self


QuietEnvelope()  # E: Missing named argument "_key" for "QuietEnvelope"  # P: Argument missing for parameter "_key"
