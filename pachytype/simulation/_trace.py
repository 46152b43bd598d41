"""What a simulation shows people: the trace of steps and the outcome (final states)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, cast, overload

from attrs import frozen

from pachytype._address import Address, Key, Ref
from pachytype.simulation._world import Kind, Step

S = TypeVar("S")


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
