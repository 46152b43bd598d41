"""What a simulation shows people: the steps of an execution (its trace) and
the outcome (every activated entity's final state)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast, overload

import attrs
from attrs import field, frozen

from pachytype._address import Address, CancelTimer, Envelope, Key, Ref

S = TypeVar("S")
D = TypeVar("D")


class Kind(enum.IntEnum):
    """What a step did (an int enum: events are hashed on every step of a search)."""

    DELIVER = 1
    DROP = 2
    DUPLICATE = 3
    TICK = 4


@frozen
class Step:
    """One step of a trace: a message delivered (or dropped, or duplicated)
    at `time`, with the target's state before and after and what it sent;
    or the clock moving (`kind` TICK). `error` is set when activation raised
    (the state is then unchanged). `events`: what an event-sourced target's
    step appended to its events."""

    kind: Kind
    time: float
    sender: Address[Any] | None
    to: Address[Any] | None
    message: object
    before: object
    after: object
    sent: tuple[Envelope[Any] | CancelTimer, ...]
    """Envelopes sent, and keyed timers cancelled (`CancelTimer`), in order."""
    error: BaseException | None = field(default=None, eq=False)
    events: tuple[object, ...] = ()

    def describe(self) -> str:
        """One line, e.g. `t=0 <log 'l'> <- Append(value=1) from <relay 1>: () -> (1,)`."""
        at = f"t={self.time:g}"
        if self.kind is Kind.TICK:
            return f"{at} clock advances"
        sender = "outside" if self.sender is None else repr(self.sender)
        head = f"{at} {self.to!r} <- {self.message!r} from {sender}"
        if self.kind is Kind.DROP:
            return f"{head}: DROPPED"
        dup = " (DUPLICATED: it stays in flight)" if self.kind is Kind.DUPLICATE else ""
        if self.error is not None:
            return (
                f"{head}{dup}: RAISED {type(self.error).__name__}: {self.error} "
                f"(state stays {self.before!r})"
            )
        sent = "".join(_sent(e) for e in self.sent)
        events = f"; events {list(self.events)!r}" if self.events else ""
        return f"{head}{dup}: {change(self.before, self.after)}{events}{sent}"


_SHOWN = 120
"""Above this many characters, a state is shown by what changed in it."""


def change(before: object, after: object) -> str:
    """What a step did to a state, for people: `before -> after` for small
    values, and for large ones only what changed (the fields of an attrs
    class, the keys of a mapping, the items of a set, what was appended to a
    tuple or list), e.g. `Account(balance: 5 -> 3)` or `(..., 1, 2) + (3,)`.
    The whole states stay on the step (`before`, `after`)."""
    if before == after:
        return f"{_short(before)} (unchanged)"
    whole = f"{before!r} -> {after!r}"
    if len(whole) <= _SHOWN:
        return whole
    return _diff(before, after)


def _diff(before: object, after: object) -> str:
    cls = type(after)
    if type(before) is cls and attrs.has(cls):
        changed = [
            f"{f.name}: {_diff(getattr(before, f.name), getattr(after, f.name))}"
            for f in attrs.fields(cls)
            if getattr(before, f.name) != getattr(after, f.name)
        ]
        return f"{cls.__qualname__}({', '.join(changed)})"
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        parts = [f"-{k!r}" for k in before if k not in after]
        for k, v in after.items():
            if k not in before:
                parts.append(f"+{k!r}: {v!r}")
            elif before[k] != v:
                parts.append(f"{k!r}: {_diff(before[k], v)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(before, (set, frozenset)) and isinstance(after, (set, frozenset)):
        parts = [f"+{x!r}" for x in after - before] + [f"-{x!r}" for x in before - after]
        return "{" + ", ".join(sorted(parts)) + "}"
    if isinstance(before, (tuple, list)) and type(before) is type(after):
        assert isinstance(after, (tuple, list))
        n = len(before)
        if len(after) > n and after[:n] == before:
            return f"{_tail(before)} + {after[n:]!r}"
    if len(repr(before)) + len(repr(after)) > 2 * _SHOWN:
        return f"{_short(before)} -> {after!r}"
    return f"{before!r} -> {after!r}"


def _tail(items: tuple[object, ...] | list[object]) -> str:
    """A long sequence by its last items: `(..., 8, 9)`."""
    if not items:
        return repr(items)
    last = ", ".join(repr(x) for x in items[-2:])
    return f"({'..., ' if len(items) > 2 else ''}{last})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


def _sent(item: Envelope[Any] | CancelTimer) -> str:
    if isinstance(item, CancelTimer):
        return f"; cancels timer {item.key!r} of {item.to!r}"
    return f"; sends {item.message!r} to {item.to!r}{_after(item)}"


def _after(envelope: Envelope[Any]) -> str:
    seconds = envelope.delay.total_seconds()
    after = f" after {seconds:g}s" if seconds else ""
    key = envelope.timer_key
    return after if key is None else f"{after} (timer {key!r})"


@frozen
class Trace:
    """The steps of one execution, in order. `str(trace)` numbers them, one a line."""

    steps: tuple[Step, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    @overload
    def __getitem__(self, i: int) -> Step: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Step, ...]: ...
    def __getitem__(self, i: int | slice) -> Step | tuple[Step, ...]:
        return self.steps[i]

    def deliveries(self) -> list[Step]:
        """The steps that activated an entity (deliveries and duplicates)."""
        return [s for s in self.steps if s.kind in (Kind.DELIVER, Kind.DUPLICATE)]

    def received_by(self, address: Address[Any]) -> list[Step]:
        """The steps that delivered a message to `address`, in order."""
        return [s for s in self.deliveries() if s.to == address]

    def render(self, last: int | None = None) -> str:
        """Numbered lines; with `last`, only the last `last` steps."""
        start = 0 if last is None else max(0, len(self.steps) - last)
        lines = [f"{n:>4}. {s.describe()}" for n, s in enumerate(self.steps[start:], start + 1)]
        if start:
            lines.insert(0, f"      ... {start} earlier steps")
        return "\n".join(lines) if lines else "      (no steps)"

    def __str__(self) -> str:
        return self.render()


@frozen
class Outcome:
    """The final state of every entity that was activated, by address, and
    the events each event-sourced entity kept.

    Look states up with any ref to the entity: `outcome[refs.counter("c")]`,
    or typed by the ref: `outcome.state(refs.counter("c"))`; events with
    `outcome.events.get(refs.cart("c"), ())`. Events are part of the
    outcome: two outcomes with equal states but different events (the same
    items added in another order) are different outcomes.
    """

    states: Mapping[Address[Any], object]
    events: Mapping[Address[Any], tuple[object, ...]] = field(factory=dict)
    """Each event-sourced entity's events, in order (only entities that kept some)."""

    def __getitem__(self, address: Address[Any]) -> object:
        try:
            return self.states[address]
        except KeyError:
            raise KeyError(
                f"{address!r} was never activated in this outcome; activated: "
                f"{sorted(map(repr, self.states))}"
            ) from None

    def state(self, ref: Ref[Any, S]) -> S:
        """The state of `ref`, typed by the ref (KeyError if never activated)."""
        return cast(S, self[ref])

    @overload
    def get(self, address: Ref[Any, S]) -> S | None: ...
    @overload
    def get(self, address: Ref[Any, S], default: D) -> S | D: ...
    @overload
    def get(self, address: Address[Any], default: object = None) -> object: ...
    def get(self, address: Address[Any], default: object = None) -> object:
        """The state of `address` (typed by the ref's state type), or
        `default` if it was never activated."""
        return self.states.get(address, default)

    def describe(self, address: Address[Any]) -> str:
        """`address`'s state, and its events if it kept any (`S; events [...]`)."""
        text = repr(self.states.get(address))
        events = self.events.get(address)
        return f"{text}; events {list(events)!r}" if events else text

    def __str__(self) -> str:
        shown = ", ".join(f"{a!r}: {self.describe(a)}" for a in self.states)
        return shown or "(nothing activated)"


def outcome_of(
    states: Mapping[Key, object],
    addresses: Mapping[Key, Address[Any]],
    events: Mapping[Key, tuple[object, ...]] | None = None,
) -> Outcome:
    """An `Outcome` from a world's states (and its event-sourced entities'
    events), sorted by address for stable display."""
    items = sorted(states.items(), key=_order)
    kept = {addresses[k]: e for k, e in sorted((events or {}).items(), key=_order) if e}
    return Outcome({addresses[k]: s for k, s in items}, kept)


def _order(item: tuple[Key, object]) -> tuple[str, str]:
    return item[0][0], repr(item[0][1])
