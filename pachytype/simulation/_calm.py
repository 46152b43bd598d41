"""CALM checks: a monotone system's outcome under message loss is *at most* its
fault-free outcome (it knows less, never something else), and under
duplication it is the *same* (its handlers are idempotent).

Each check explores every order twice, fault-free and with the fault, and
compares the sets of outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from pachytype._address import Address
from pachytype.simulation._explore import Found, SimulationReport
from pachytype.simulation._world import freeze

Order = Callable[[object, object], bool]
"""`le(a, b)`: whether state `a` carries at most the information of `b`."""


def at_most(a: object, b: object) -> bool:
    """The default information order on states.

    Equal values; sets: subset; dicts: keys subset and values at most;
    str/tuple/list: `a` is a subsequence of `b`; numbers: `a <= b`; `None`
    is at most anything; attrs instances of one class: field by field.
    """
    if a == b or a is None:
        return True
    if isinstance(a, (set, frozenset)) and isinstance(b, (set, frozenset)):
        return a <= b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return all(k in b and at_most(v, b[k]) for k, v in a.items())
    if isinstance(a, (str, tuple, list)) and type(a) is type(b):
        return _subsequence(a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a <= b
    cls = type(a)
    if attrs.has(cls) and cls is type(b):
        return all(at_most(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(cls))
    return False


def _subsequence(a: Sequence[object], b: Sequence[object]) -> bool:
    remaining = iter(b)
    return all(any(x == y for y in remaining) for x in a)


@frozen
class CalmCheck:
    """The result of a CALM check: `ok`, and if not, an outcome that breaks it
    (with its trace) beside the fault-free outcomes."""

    name: str
    ok: bool
    clean: SimulationReport
    faulty: SimulationReport
    counterexample: Found | None

    def __str__(self) -> str:
        head = f"{self.name}: {'holds' if self.ok else 'BROKEN'}"
        lines = [
            head,
            f"  fault-free: {self.clean.summary()}",
            f"  faulty: {self.faulty.summary()}",
        ]
        if self.counterexample is not None:
            lines.append(f"  counterexample: {self.counterexample.outcome}")
            lines.append("  fault-free outcomes:")
            lines.extend(f"    {f.outcome}" for f in self.clean.outcomes)
            lines.append(f"  trace:\n{self.counterexample.trace}")
        return "\n".join(lines)


def drops_check(
    clean: SimulationReport,
    faulty: SimulationReport,
    init: Callable[[Address[Any]], object],
    le: Order,
) -> CalmCheck:
    """Every outcome with drops is at most some fault-free outcome, entity by
    entity (and each event-sourced entity's events a subsequence of its events there)."""

    def below(f: Found, c: Found) -> bool:
        everyone = set(f.outcome.states) | set(c.outcome.states)
        return all(
            le(f.outcome.states.get(a, init(a)), c.outcome.states.get(a, init(a)))
            and _subsequence(f.outcome.events.get(a, ()), c.outcome.events.get(a, ()))
            for a in everyone
        )

    bad = next((f for f in faulty.outcomes if not any(below(f, c) for c in clean.outcomes)), None)
    return CalmCheck(
        "under drops the outcome is at most the fault-free one", bad is None, clean, faulty, bad
    )


def duplicates_check(clean: SimulationReport, faulty: SimulationReport) -> CalmCheck:
    """Every outcome with duplicates is a fault-free outcome."""
    known = {_key(c) for c in clean.outcomes}
    bad = next((f for f in faulty.outcomes if _key(f) not in known), None)
    return CalmCheck("under duplicates the outcome is the same", bad is None, clean, faulty, bad)


def _key(found: Found) -> Hashable:
    outcome = found.outcome
    states = frozenset((a, freeze(s)) for a, s in outcome.states.items())
    return states, frozenset((a, freeze(e)) for a, e in outcome.events.items())
