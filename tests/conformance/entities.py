"""Small entities, each exercising one promise of DESIGN §1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NewType

from attrs import frozen

from pachytype import Activation, Address, CancelTimer, Entity, Envelope
from tests.conformance import refs

TallyId = NewType("TallyId", str)


@frozen
class Add:
    """Add `n` to the tally."""

    n: int = 1


@frozen
class Fail:
    """Raise while handling this message."""

    reason: str


@frozen
class SendBad:
    """Return an envelope carrying a message its target does not accept."""


@frozen
class Spoil:
    """Return a new state that is not an int (so it cannot be stored)."""


TallyMsg = Add | Fail | SendBad | Spoil


class Tally(Entity[TallyId, TallyMsg, int]):
    """Sums what it is sent; fails on request."""

    def init(self, id: TallyId) -> int:
        if id == "unborn":
            raise ValueError("init refuses the id 'unborn'")
        return 0

    def activate(self, msg: TallyMsg, state: int) -> Activation[int]:
        match msg:
            case Add(n=n):
                return [], state + n
            case Fail(reason=reason):
                raise RuntimeError(reason)
            case SendBad():
                bad = Address.post(refs.log(7), Add(1))  # type: ignore[misc]  # on purpose
                return [bad], state + 1000
            case Spoil():
                return [], "spoiled"  # type: ignore[return-value]  # on purpose


@frozen
class Append:
    """Append `value` to the log."""

    value: int


class Log(Entity[int, Append, tuple[int, ...]]):
    """Remembers what it was sent, in arrival order (ids are ints)."""

    def init(self, id: int) -> tuple[int, ...]:
        return ()

    def activate(self, msg: Append, state: tuple[int, ...]) -> Activation[tuple[int, ...]]:
        return [], (*state, msg.value)


@frozen
class Emit:
    """Send `values`, in order, to `to` (a narrowed address)."""

    to: Address[Append]
    values: tuple[int, ...]


@frozen
class Remind:
    """Send `Append(value)` to `to` after `delay_ms` milliseconds."""

    to: Address[Append]
    value: int
    delay_ms: int


@frozen
class Plan:
    """Keyed timers at `to`, in order: `("set", key, value, delay_ms)` sets
    timer `key` to send `Append(value)` after `delay_ms` ms, `("cancel", key,
    0, 0)` cancels it, `("fail", "", 0, 0)` makes the activation raise."""

    to: Address[Append]
    ops: tuple[tuple[str, str, int, int], ...]


EmitterMsg = Emit | Remind | Plan


class Emitter(Entity[str, EmitterMsg, int]):
    """Sends what it is told to; its state counts the envelopes it sent."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: EmitterMsg, state: int) -> Activation[int]:
        match msg:
            case Emit(to=to, values=values):
                return [to.post(Append(v)) for v in values], state + len(values)
            case Remind(to=to, value=value, delay_ms=ms):
                return [to.post(Append(value)).after(timedelta(milliseconds=ms))], state + 1
            case Plan(to=to, ops=ops):
                out: list[Envelope[Any] | CancelTimer] = []
                for op, key, value, ms in ops:
                    if op == "set":
                        later = to.post(Append(value)).after(timedelta(milliseconds=ms), key=key)
                        out.append(later)
                    elif op == "cancel":
                        out.append(to.cancel_timer(key))
                    else:
                        raise RuntimeError("the plan fails")
                return out, state + len(out)
