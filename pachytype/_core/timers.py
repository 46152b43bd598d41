"""Keyed timers: replace and cancel, one rule for every ecosystem.

Design note
-----------
A delayed envelope (`env.after(delay)`) is a *timer*: its message is
delivered `delay` after the send is committed. With a key
(`env.after(delay, key="payment-timeout")`) it is a *keyed timer*,
identified by `(target entity, key)`. The rule, kept by InMemory,
LocalDisk, Postgres and the Simulation alike:

1. **Replace.** Sending a keyed envelope removes the *pending* timer with
   the same `(target, key)`, if any, then schedules the new one (a keyed
   envelope with no delay is delivered at once, and still removes the
   pending one). A removed timer is never delivered.
2. **Cancel.** `activate` may return `address.cancel_timer(key)` among
   its envelopes: the pending timer `(address, key)` is removed, in the
   same commit as the activation's new state (all or nothing: if the
   activation fails, nothing is cancelled). Cancelling nothing is no error.
3. **Pending means not yet due.** A timer stops being pending when it
   falls due (the ecosystem's clock passed its time: on Postgres the
   database's clock, in the Simulation a clock tick). From then on its
   message is an ordinary message on its way to the target and is
   **delivered even if it is cancelled or replaced later**. So an entity
   that cancels a timer must still expect its message when the timer fell
   due just before the cancel: check the state (e.g. an order that is
   already paid ignores `PaymentTimeout`). We chose this over "a cancel
   also drops a due but undelivered message" because it is what every
   store can promise without reaching into another entity's inbox (on
   Postgres the due row may be claimed by another node at that moment),
   and because it is one simple sentence users can test: the Simulation
   explores it with `Faults(late=True)`, which lets timers fall due while
   messages are still in flight (by default messages take no virtual time,
   so a timer only falls due when nothing else can happen).
4. Within one commit, effects apply in order: a timer set and then
   cancelled (or replaced) by a later activation of the same batch is
   never stored.

`KeyedTimers` is the index every runtime keeps of its pending keyed timers;
`reschedule` is the same rule over the Simulation's immutable tuple of
timers; `supersede` applies it to the rows of one Postgres commit before
they are written (the rows already stored are then removed in SQL, where
"pending" is `deliver_at > now()`, skipping rows a claim holds: those fell
due and are being delivered).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Generic, TypeAlias, TypeVar

from pachytype._address import Key
from pachytype._errors import PachytypeError

T = TypeVar("T")

TimerId: TypeAlias = tuple[Key, str]
"""`((entity type, id), key)`: what identifies a keyed timer."""


class _Cancelled:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CANCEL"


CANCEL: Final[Any] = _Cancelled()
"""In a routed envelope's message slot: the envelope is a `CancelTimer`
(its timer key says which timer; nothing is delivered)."""


class KeyedTimers(Generic[T]):
    """The pending keyed timers of one runtime: `(target, key)` -> its handle `T`.

    Callers disarm what `schedule` and `cancel` return (it is no longer
    pending: it must never be delivered) and call `fired` when a timer
    falls due (it is no longer pending: it is delivered)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[TimerId, T] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def schedule(self, target: Key, key: str, timer: T | None) -> T | None:
        """Rule 1: `timer` (None: delivered at once) replaces the pending
        `(target, key)`; returns the replaced timer, to disarm."""
        tid = (target, key)
        old = self._pending.pop(tid, None)
        if timer is not None:
            self._pending[tid] = timer
        return old

    def cancel(self, target: Key, key: str) -> T | None:
        """Rule 2: remove the pending `(target, key)`; returns it, to disarm."""
        return self._pending.pop((target, key), None)

    def fired(self, target: Key, key: str, timer: T) -> None:
        """Rule 3: `timer` fell due: it is a message now, no longer pending."""
        tid = (target, key)
        if self._pending.get(tid) is timer:
            del self._pending[tid]

    def clear(self) -> None:
        self._pending.clear()


def reschedule(
    timers: Sequence[T],
    target: Hashable,
    key: str,
    ident: Callable[[T], tuple[Hashable, str | None]],
) -> tuple[T, ...]:
    """Rules 1 and 2 over an immutable sequence of pending timers: `timers`
    without the one identified as `(target, key)` (`ident` tells a timer's
    target and key)."""
    return tuple(t for t in timers if ident(t) != (target, key))


def supersede(
    rows: list[T],
    row: T,
    ident: Callable[[T], tuple[Hashable, str | None]],
    delayed: Callable[[T], bool],
) -> None:
    """Rules 1, 2 and 4 inside one commit: `row`, keyed, removes from `rows`
    (the rows of the commit so far, in order) the delayed ones of the same
    `(target, key)`; those with no delay are delivered at once, not pending."""
    tid = ident(row)
    rows[:] = [r for r in rows if not (delayed(r) and ident(r) == tid)]


DROPPED: Final = "pachytype.TimerDropped"
"""The error type a store records as the answer of a `call` whose keyed timer
was cancelled or replaced (Postgres: the caller may be in another process)."""


def timer_dropped(to: object, key: str, cancelled: bool | None) -> PachytypeError:
    """The error of a `call` whose keyed timer was cancelled or replaced
    (`cancelled=None`: the store does not tell which)."""
    how = {
        True: "cancelled",
        False: "replaced by a later timer of that key",
        None: "cancelled, or replaced by a later timer of that key,",
    }[cancelled]
    return PachytypeError(
        f"the timer {key!r} of {to!r} was {how} before it fell due: its message is not "
        f"delivered, so this call has no state to return; call without a timer key to "
        f"wait for the message"
    )


def keyed_unsupported(to: object, key: str) -> PachytypeError:
    """An ecosystem that does not keep keyed timers yet refuses them (never
    silently treats one as a plain timer)."""
    return PachytypeError(
        f"keyed timer {key!r} for {to!r}: this ecosystem does not keep keyed timers yet "
        f"(InMemory, LocalDisk and the Simulation do); send it without key="
    )
