"""Checking envelopes: from outside (`send`/`call`) and returned by `activate`.

One rule for every ecosystem: an envelope must be built by a ref, its
entity type must be in the registry and its message must be one of that
type's message classes. Outside, a bad envelope makes the whole `send`
raise before anything is sent; returned by `activate`, it fails that
activation (the entity keeps its state, the message is a dead letter).
`activate` may also return a `CancelTimer` (`address.cancel_timer(key)`):
it is checked like an envelope (known entity type) and routed with
`CANCEL` as its message (`pachytype._core.timers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from pachytype._address import Address, _Cancel, _Envelope, not_an_envelope
from pachytype._core.timers import CANCEL
from pachytype._errors import WrongMessageError
from pachytype._registry import EntityType, Registry

Checked: TypeAlias = tuple[Address[Any], EntityType, object, float, str | None]
"""`(target address, its entity type, message, delay in seconds, timer key)`:
the timer key of a keyed timer or a cancel (message `CANCEL`), else None."""


def check_outside(registry: Registry, envelope: object) -> Checked:
    """Check an envelope given to `send`/`call` (raises, naming what is wrong)."""
    if type(envelope) is not _Envelope:
        raise not_an_envelope(envelope)
    to = envelope._to
    etype = registry.types.get(to._entity_type)
    if etype is None or type(envelope._message) not in etype.message_set:
        etype = registry.get(to._entity_type, to._id)  # raises UnknownEntityError
        etype.check_message(to._id, envelope._message)  # raises WrongMessageError
    return to, etype, envelope._message, envelope._delay, envelope._tkey


def check_returned(registry: Registry, sender: Address[Any], envelope: object) -> Checked:
    """Check an envelope returned by `sender`'s `activate` (raises: the activation fails)."""
    if type(envelope) is not _Envelope:
        if type(envelope) is _Cancel:
            target = envelope._to
            timed = registry.get(target._entity_type, target._id)  # raises, with the message
            return target, timed, CANCEL, 0.0, envelope._key
        raise TypeError(
            f"entity {sender._entity_type!r} (id {sender._id!r}) returned {envelope!r} "
            f"among its envelopes; return envelopes built by refs (refs.x(id).message(...))"
        )
    to = envelope._to
    message = envelope._message
    etype = registry.types.get(to._entity_type)
    if etype is None:
        etype = registry.get(to._entity_type, to._id)  # raises, with the message
    if type(message) not in etype.message_set:
        raise WrongMessageError(
            etype.name, to._id, message, [m.__qualname__ for m in etype.messages]
        )
    return to, etype, message, envelope._delay, envelope._tkey


Route: TypeAlias = Callable[[Address[Any], Any], Any]
"""What a turn does with each envelope `activate` returned: check it (and, on
a durable ecosystem, encode it); raising fails the activation."""


def checker(registry: Registry) -> Route:
    """The plain route: `check_returned` against `registry`."""

    def route(sender: Address[Any], envelope: object) -> Checked:
        return check_returned(registry, sender, envelope)

    return route
