"""What a simulation shows people: the steps of an execution (its trace) and
the outcome (every activated entity's final state)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast, overload

from attrs import field, frozen

from pachytype._address import Address, Envelope, Key, Ref

S = TypeVar("S")


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
    sent: tuple[Envelope[Any], ...]
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
        sent = "".join(f"; sends {e.message!r} to {e.to!r}{_after(e)}" for e in self.sent)
        events = f"; events {list(self.events)!r}" if self.events else ""
        return f"{head}{dup}: {self.before!r} -> {self.after!r}{events}{sent}"


def _after(envelope: Envelope[Any]) -> str:
    seconds = envelope.delay.total_seconds()
    return f" after {seconds:g}s" if seconds else ""


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
    """The final state of every entity that was activated, by address.

    Look states up with any ref to the entity: `outcome[refs.counter("c")]`,
    or typed by the ref: `outcome.state(refs.counter("c"))`.
    """

    states: Mapping[Address[Any], object]

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

    def get(self, address: Address[Any], default: object = None) -> object:
        """The state of `address`, or `default` if it was never activated."""
        return self.states.get(address, default)

    def __str__(self) -> str:
        return ", ".join(f"{a!r}: {s!r}" for a, s in self.states.items()) or "(nothing activated)"


def outcome_of(states: Mapping[Key, object], addresses: Mapping[Key, Address[Any]]) -> Outcome:
    """An `Outcome` from a world's states, sorted by address for stable display."""
    items = sorted(states.items(), key=lambda kv: (kv[0][0], repr(kv[0][1])))
    return Outcome({addresses[k]: s for k, s in items})
