"""Addresses and envelopes: the only way to name an entity and to send it a message.

`Address[M]` names one entity instance and accepts messages of type `M`; it is
*contravariant* in `M`, so an address that accepts more messages can stand in
where one accepting fewer is expected (`Address[Ping | Pong]` is an
`Address[Pong]`). `Ref[M, S]` is an address that also knows its entity's state
type `S`, so sends through it build `Envelope[S]` and `eco.call` is typed.

Neither can be built by user code: `Address.__init__` takes a keyword-only
`_key: Never` that only this module can satisfy, and `Envelope` is abstract
with one private, final implementation (which is also a `Request`: the
envelope of a message carrying a reply address, typed by that reply). Refs
come from generated `refs.py` modules and from `Entity.address`.

Keyed timers: `envelope.after(delay, key="payment-timeout")` is a timer
that replaces the pending one with the same key at the same target, and
`address.cancel_timer(key)` builds a `CancelTimer`, a value `activate` may
return among its envelopes (the rule: `pachytype._core.timers`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from datetime import timedelta
from typing import Any, Generic, Never, TypeVar, cast, final

M_contra = TypeVar("M_contra", contravariant=True)
S_co = TypeVar("S_co", covariant=True)
R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R", bound="Address[Any]")

# The only value that satisfies `_key: Never`; never exported.
_KEY: Never = cast(Never, object())

Key = tuple[str, Hashable]
"""An entity's identity as plain values: (entity type name, id)."""


class Address(Generic[M_contra]):
    """The address of one entity instance: `(entity type, id)`.

    Addresses compare and hash by that pair, are immutable, and can be carried
    inside messages (`reply_to: Address[Pong]`) to let a receiver answer with
    exactly the messages the type allows.

    >>> env = refs.counter("c1").post(Increment())   # doctest: +SKIP
    """

    __slots__ = ("_entity_type", "_hash", "_id", "_key")

    # Final: a subclass overriding __init__ would escape the `_key` guard.
    @final
    def __init__(self, entity_type: str, id: Hashable, *, _key: Never) -> None:
        if _key is not _KEY:
            raise TypeError(
                "Address cannot be built directly: use the generated refs "
                "(refs.account(id)) or Entity.address(id)"
            )
        self._entity_type = entity_type
        self._id = id
        self._key = (entity_type, id)  # built once: the runtime indexes by it per message
        self._hash = hash(self._key)

    @property
    def entity_type(self) -> str:
        """The entity type's name (the entity class name in snake_case)."""
        return self._entity_type

    @property
    def id(self) -> Hashable:
        """The entity's id."""
        return self._id

    @property
    def key(self) -> Key:
        """`(entity_type, id)`: the plain-value identity stores index by."""
        return self._key

    def post(self, msg: M_contra) -> Envelope[object]:
        """Build an envelope carrying `msg` to this address (nothing is sent yet)."""
        return _Envelope(self, msg, 0.0)

    def cancel_timer(self, key: str) -> CancelTimer:
        """Cancel the pending timer `key` of this entity (set with
        `.after(delay, key=key)`): return it among `activate`'s envelopes.

        Only a timer not yet due is cancelled; one already due is a message
        on its way and is delivered (see `pachytype._core.timers`)."""
        return _Cancel(self, _timer_key(self, key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<{self._entity_type} {self._id!r}>"


class Ref(Address[M_contra], Generic[M_contra, S_co]):
    """An address that also carries its entity's state type `S`.

    Generated ref classes (`AccountRef`) subclass `Ref[AccountMsg,
    AccountState]` and add one method per message class.
    """

    __slots__ = ()

    def post(self, msg: M_contra) -> Envelope[S_co]:
        """Build an envelope carrying `msg`; `eco.call` on it returns an `S`."""
        return _Envelope(self, msg, 0.0)

    def _request(self, msg: M_contra) -> Request[S_co, Any]:
        """`post` for a message that carries a reply address (generated refs
        narrow the `Any` to the reply type, for `eco.ask`)."""
        return _Envelope(self, msg, 0.0)


class Envelope(ABC, Generic[S_co]):
    """A message bound to its target, ready to send; `S` is the target's state type.

    Envelopes only come from refs (`refs.account("a").deposit(amount=5)`) and
    from `Address.post`; the concrete class is private.
    """

    __slots__ = ()

    # Final and keyed like Address.__init__, so that a user subclass can neither
    # be instantiated nor override it: only the private class makes envelopes.
    @final
    def __init__(self, *, _key: Never) -> None:
        if _key is not _KEY:
            raise TypeError(
                "Envelope cannot be built directly: use the generated refs "
                "(refs.account(id).deposit(...)) or address.post(message)"
            )

    @property
    @abstractmethod
    def to(self) -> Address[Any]:
        """The target address."""

    @property
    @abstractmethod
    def message(self) -> object:
        """The message carried."""

    @property
    @abstractmethod
    def delay(self) -> timedelta:
        """How long after sending the message is delivered (zero: at once)."""

    @property
    @abstractmethod
    def timer_key(self) -> str | None:
        """The key of a keyed timer (`after(delay, key=...)`), else None."""

    @abstractmethod
    def after(self, delay: timedelta, *, key: str | None = None) -> Envelope[S_co]:
        """The same envelope, delivered `delay` after it is sent (a durable reminder).

        With `key`, it is a *keyed timer*: it replaces the pending timer of
        the same key at the same target (that one is never delivered), and
        `activate` can cancel it by returning `address.cancel_timer(key)`.
        A timer already due is not replaced or cancelled: its message is on
        its way (the rule: `pachytype._core.timers`)."""


class Request(Envelope[S_co], Generic[S_co, R_co]):
    """An envelope whose message carries a reply address `reply_to: Address[R]`.

    Generated ref methods return one for such messages, so `eco.ask` knows,
    statically, the type of the answer (`R`) without it being spelled::

        reserved = await eco.ask(lambda r: refs.inventory(sku).reserve(qty=1, reply_to=r))
    """

    __slots__ = ()


class CancelTimer(ABC):
    """A value `activate` returns among its envelopes to cancel the pending
    keyed timer `key` of the entity at `to` (built by
    `address.cancel_timer(key)`; the concrete class is private).

    It is not an envelope: mypy refuses it where one is expected (`eco.send`,
    `eco.call`, `.after`), so a cancel only ever comes from an activation.
    """

    __slots__ = ()

    @final
    def __init__(self, *, _key: Never) -> None:
        if _key is not _KEY:
            raise TypeError("CancelTimer cannot be built directly: use address.cancel_timer(key)")

    @property
    @abstractmethod
    def to(self) -> Address[Any]:
        """The entity whose timer is cancelled."""

    @property
    @abstractmethod
    def key(self) -> str:
        """The key of the timer cancelled."""


@final
class _Cancel(CancelTimer):
    __slots__ = ("_key", "_to")

    def __init__(self, to: Address[Any], key: str) -> None:  # type: ignore[misc]
        self._to = to
        self._key = key

    @property
    def to(self) -> Address[Any]:
        return self._to

    @property
    def key(self) -> str:
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Cancel):
            return NotImplemented
        return (self._to, self._key) == (other._to, other._key)

    def __hash__(self) -> int:
        return hash((self._to, self._key))

    def __repr__(self) -> str:
        return f"CancelTimer(to={self._to!r}, key={self._key!r})"


def _timer_key(to: Address[Any], key: object) -> str:
    if type(key) is not str or not key:
        raise TypeError(
            f"a timer key must be a non-empty str, got {key!r} for {to!r}; name the timer, "
            f'e.g. key="payment-timeout"'
        )
    return key


@final
class _Envelope(Request[Any, Any]):
    __slots__ = ("_delay", "_message", "_tkey", "_to")

    # The one class allowed past Envelope's final __init__ (hot path: no super call).
    def __init__(  # type: ignore[misc]
        self, to: Address[Any], message: object, delay: float, tkey: str | None = None
    ) -> None:
        self._to = to
        self._message = message
        self._delay = delay
        self._tkey = tkey

    @property
    def to(self) -> Address[Any]:
        return self._to

    @property
    def message(self) -> object:
        return self._message

    @property
    def delay(self) -> timedelta:
        return timedelta(seconds=self._delay)

    @property
    def delay_seconds(self) -> float:
        return self._delay

    @property
    def timer_key(self) -> str | None:
        return self._tkey

    def after(self, delay: timedelta, *, key: str | None = None) -> Envelope[Any]:
        seconds = delay.total_seconds()
        if seconds < 0:
            raise ValueError(f"delay must not be negative, got {delay!r} for {self._to!r}")
        return _Envelope(
            self._to, self._message, seconds, None if key is None else _timer_key(self._to, key)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Envelope):
            return NotImplemented
        return (self._to, self._message, self._delay, self._tkey) == (
            other._to,
            other._message,
            other._delay,
            other._tkey,
        )

    def __hash__(self) -> int:
        return hash((self._to, self._delay))

    def __repr__(self) -> str:
        after = f" after {self._delay}s" if self._delay else ""
        keyed = f" key={self._tkey!r}" if self._tkey is not None else ""
        return f"Envelope(to={self._to!r}, message={self._message!r}{after}{keyed})"


def make_ref(cls: type[R], entity_type: str, id: Hashable) -> R:
    """Build a ref of class `cls` (library and generated code only)."""
    return cls(entity_type, id, _key=_KEY)


def make_envelope(
    to: Address[Any], message: object, delay_seconds: float = 0.0, timer_key: str | None = None
) -> Envelope[Any]:
    """Build an envelope from plain values (library use: decoding, redelivery)."""
    return _Envelope(to, message, delay_seconds, timer_key)


def make_cancel(to: Address[Any], key: str) -> CancelTimer:
    """Build a `CancelTimer` from plain values (library use: traces)."""
    return _Cancel(to, key)


def unpack(envelope: Envelope[Any]) -> tuple[Address[Any], object, float]:
    """`(address, message, delay in seconds)` of an envelope, without copying."""
    if type(envelope) is not _Envelope:
        raise not_an_envelope(envelope)
    return envelope._to, envelope._message, envelope._delay


def not_an_envelope(value: object) -> TypeError:
    """The error for something passed where an envelope belongs."""
    return TypeError(
        f"expected an Envelope built by a ref (refs.x(id).message(...)), "
        f"got {type(value).__name__}: {value!r}"
    )
