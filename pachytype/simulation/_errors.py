"""The simulation's errors: they show the failing entity, its state, every
message it received, and the trace that led there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pachytype._address import Address
from pachytype._errors import PachytypeError
from pachytype.simulation._trace import Outcome, Trace

_TRACE_SHOWN = 40
"""Trace lines in an error message (the whole trace is on the exception)."""


class SimulationError(PachytypeError):
    """`activate` (or `init`) raised during a simulation.

    Attributes: `address` (the failing entity), `state` (its state when it
    failed), `message`, `received` (every message it received in this
    execution, in order, ending with the failing one), `trace` (the whole
    execution up to and including the failing step) and `error` (also the
    `__cause__`).
    """

    def __init__(
        self,
        address: Address[Any],
        state: object,
        message: object,
        error: BaseException,
        trace: Trace,
    ) -> None:
        self.address = address
        self.entity_type = address.entity_type
        self.id = address.id
        self.state = state
        self.message = message
        self.error = error
        self.trace = trace
        self.received = tuple(s.message for s in trace.received_by(address))
        received = "\n".join(
            f"    {n}. {m!r}" + ("   <- raised here" if n == len(self.received) else "")
            for n, m in enumerate(self.received, 1)
        )
        super().__init__(
            f"entity {address.entity_type!r} (id {address.id!r}) raised "
            f"{type(error).__name__}: {error}\n"
            f"  while handling: {message!r}\n"
            f"  in state: {state!r}\n"
            f"  messages it received, in order:\n{received}\n"
            f"  trace ({len(trace)} steps):\n{trace.render(last=_TRACE_SHOWN)}\n"
            f"Fix `activate` for this message in this state; replay this order with "
            f"the trace above (it is deterministic)."
        )


class RunawayError(PachytypeError):
    """A run delivered `limit` messages without the system going quiet."""

    def __init__(self, limit: int, pending: int, trace: Trace) -> None:
        self.limit = limit
        self.pending = pending
        self.trace = trace
        busiest: dict[Address[Any], int] = {}
        for step in trace.deliveries():
            if step.to is not None:
                busiest[step.to] = busiest.get(step.to, 0) + 1
        top = sorted(busiest.items(), key=lambda kv: -kv[1])[:5]
        tops = ", ".join(f"{a!r} x{n}" for a, n in top)
        super().__init__(
            f"the system did not go quiet within {limit} deliveries ({pending} messages "
            f"still in flight); most activated: {tops}\n"
            f"  last steps:\n{trace.render(last=10)}\n"
            f"If the system is meant to run this long, raise max_deliveries=...; otherwise "
            f"look for entities that keep messaging each other."
        )


class InvariantError(PachytypeError):
    """An invariant raised on a world the simulation reached.

    Attributes: `invariant` (the function), `error` (what it raised, also the
    `__cause__`), `outcome` (every activated entity's state in that world)
    and `trace` (a shortest way there).
    """

    def __init__(
        self, invariant: object, error: BaseException, outcome: Outcome, trace: Trace
    ) -> None:
        self.invariant = invariant
        self.error = error
        self.outcome = outcome
        self.trace = trace
        name = getattr(invariant, "__qualname__", repr(invariant))
        shown = str(error) or "(no message)"
        super().__init__(
            f"invariant {name} failed after {len(trace)} steps: "
            f"{type(error).__name__}: {shown}\n"
            f"  states: {outcome}\n"
            f"  trace ({len(trace)} steps):\n{trace.render(last=_TRACE_SHOWN)}\n"
            f"The trace is deterministic: replay it to debug, or fix the entity whose "
            f"step broke the invariant."
        )


def check(
    invariant: Callable[[Outcome], object], outcome: Outcome, trace: Callable[[], Trace]
) -> None:
    """Run `invariant` on `outcome`; raise `InvariantError` (with the trace) if it raises."""
    try:
        invariant(outcome)
    except Exception as error:
        failure = InvariantError(invariant, error, outcome, trace())
        raise failure from error


class LivenessError(PachytypeError):
    """An `eventually=` property does not always come true.

    Either an execution ends in a world where it is false (`cycle` is an
    empty trace), or the system can go round a fair `cycle` of worlds where
    it is false forever (see `pachytype.simulation._liveness` on fairness).
    Attributes: `prop` (the property), `outcome` (the
    states where the execution ends, or where the cycle starts), `trace`
    (a shortest way there) and `cycle` (the steps around the cycle, which
    lead back to that same world).
    """

    def __init__(self, prop: object, outcome: Outcome, trace: Trace, cycle: Trace) -> None:
        self.prop = prop
        self.outcome = outcome
        self.trace = trace
        self.cycle = cycle
        name = getattr(prop, "__qualname__", repr(prop))
        if not cycle:
            head = (
                f"eventually {name} does not hold: an execution ends after {len(trace)} "
                f"steps without it"
            )
            tail = (
                "Every execution must end in a world where the property holds: find the "
                "step that should have led there (a lost or unanswered message?)."
            )
        else:
            head = (
                f"eventually {name} may never hold: after {len(trace)} steps the system can "
                f"go round a cycle of {len(cycle)} steps forever without it"
            )
            tail = (
                "The cycle is fair (every message in flight all along it is delivered in it, "
                "and the clock moves if a timer is set), so a real system can stay in it "
                "forever: break the symmetry or bound the retries."
            )
        cycle_text = (
            f"  cycle ({len(cycle)} steps, back to the start):\n{cycle.render()}\n" if cycle else ""
        )
        super().__init__(
            f"{head}\n"
            f"  states: {outcome}\n"
            f"  trace ({len(trace)} steps):\n{trace.render(last=_TRACE_SHOWN)}\n"
            f"{cycle_text}"
            f"{tail}"
        )
