"""`Simulation`: run a registry's entities deterministically, explore every
delivery order, inject faults, and move a virtual clock.

The facade over the pure core (`_world`, `_run`, `_explore`, `_calm`): it
keeps the current world between runs (so tests can send, run, look, advance
time, and send again) and turns results into the public report types.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

from attrs import frozen

from pachytype._address import Address, Envelope, Ref
from pachytype._clock import Clock
from pachytype._errors import InitError
from pachytype._registry import Registry
from pachytype.simulation import _world
from pachytype.simulation._calm import CalmCheck, Order, at_most, drops_check, duplicates_check
from pachytype.simulation._ecosystem import SimulatedEcosystem
from pachytype.simulation._explore import (
    Invariant,
    OnError,
    Progress,
    SimulationReport,
    exhaust,
    naive,
)
from pachytype.simulation._faults import NO_FAULTS, Faults
from pachytype.simulation._run import Chooser, run, scheduled, seeded
from pachytype.simulation._trace import Outcome, Step, Trace, outcome_of
from pachytype.simulation._world import Context, World

S = TypeVar("S")


@frozen(repr=False)
class RunResult:
    """What `Simulation.run` did: the outcome (every activated entity's state
    after the run), the trace of this run, and the virtual time it ended at."""

    outcome: Outcome
    trace: Trace
    now: timedelta

    def state(self, ref: Ref[Any, S]) -> S:
        """The state of `ref` after the run (KeyError if it was never activated)."""
        return cast(S, self.outcome[ref])

    def __repr__(self) -> str:
        # Multi-line on purpose: hypothesis prints a failing run with its trace.
        return f"RunResult({self.outcome}; now={self.now}; trace:\n{self.trace}\n)"

    @property
    def dead_letters(self) -> tuple[Step, ...]:
        """Steps whose activation raised (only with `on_error="dead_letter"`)."""
        return tuple(s for s in self.trace if s.error is not None)


class Simulation:
    """A deterministic, seeded simulation of a registry's entities.

    >>> sim = Simulation(REGISTRY, seed=1)                     # doctest: +SKIP
    >>> result = sim.run([refs.counter("c").increment()])      # doctest: +SKIP
    >>> result.state(refs.counter("c"))                        # doctest: +SKIP
    1
    >>> report = sim.exhaust([...], faults=Faults(drop=1))     # doctest: +SKIP
    >>> report.deterministic, len(report.outcomes)             # doctest: +SKIP

    `run` keeps the world it ends in: later runs continue from it, and
    `state`, `outcome`, `now` and `advance` look at it or move it on.
    `exhaust` explores from that world without changing it.
    """

    def __init__(self, registry: Registry, *, seed: int = 0, on_error: OnError = "raise") -> None:
        self.registry = registry
        self.seed = seed
        self.on_error: OnError = on_error
        self._ctx = Context(registry)
        self._rng = random.Random(seed)
        self._world = World.empty()

    # -- looking -------------------------------------------------------------

    @property
    def now(self) -> timedelta:
        """The virtual time."""
        return timedelta(seconds=self._world.now)

    def state(self, ref: Ref[Any, S]) -> S:
        """The current state of `ref` (its `init` state if never activated;
        `InitError` if that `init` raises)."""
        key = ref.key
        if key in self._world.states:
            return cast(S, self._world.states[key])
        self.registry.get(ref.entity_type, ref.id)
        try:
            return cast(S, self._ctx.init_state(key))
        except Exception as error:
            raise InitError(ref.entity_type, ref.id, error) from error

    def events(self, ref: Ref[Any, Any]) -> tuple[object, ...]:
        """The events an event-sourced `ref` kept so far, in order (empty if none)."""
        self.registry.get(ref.entity_type, ref.id)
        return self._world.events.get(ref.key, ())

    def outcome(self) -> Outcome:
        """Every activated entity's current state."""
        return outcome_of(self._world.states, self._ctx.addresses)

    @property
    def pending(self) -> int:
        """Messages in flight or waiting for their delay."""
        return self._world.pending()

    def ecosystem(self, clock: Clock | None = None) -> SimulatedEcosystem:
        """This simulation behind the async `Ecosystem` interface (`send`,
        `call`, `state`, `follow`, ...): shuffled, seeded delivery orders for
        code written against any ecosystem. Delays wait on `clock` (the
        system clock by default; a `ManualClock` makes them instant)."""
        return SimulatedEcosystem(self, clock)

    def reset(self) -> None:
        """Forget every state and message; the clock goes back to zero."""
        self._world = World.empty()

    # -- one execution -------------------------------------------------------

    def send(self, envelopes: Iterable[Envelope[Any]]) -> None:
        """Put envelopes in flight (all checked first), without delivering them."""
        self._world = _world.send(self._world, self._ctx, envelopes)

    def run(
        self,
        envelopes: Iterable[Envelope[Any]] = (),
        *,
        faults: Faults = NO_FAULTS,
        schedule: Sequence[int] | None = None,
        until: timedelta | None = None,
        max_deliveries: int = 100_000,
        fault_rate: float = 0.2,
        on_error: OnError | None = None,
        invariant: Invariant | None = None,
    ) -> RunResult:
        """Send `envelopes`, then deliver until nothing is in flight, firing
        delayed envelopes as the virtual clock jumps to them.

        The order is drawn from the seeded generator, or taken from
        `schedule` (see `pachytype.simulation.strategies`). `faults` are
        budgets; each delivery becomes a fault with probability `fault_rate`
        while budget remains. `until` stops the clock that far ahead (later
        timers stay set; `advance` moves on). Raises `SimulationError` when
        an activation raises (unless `on_error="dead_letter"`),
        `InvariantError` when `invariant(outcome)` raises after a step, and
        `RunawayError` after `max_deliveries` steps.
        """
        if until is not None and until < timedelta(0):
            raise ValueError(f"until must not be negative, got {until!r}")
        self.send(envelopes)
        choose: Chooser = seeded(self._rng, fault_rate) if schedule is None else scheduled(schedule)
        start = self._world.with_faults(faults)
        limit = None if until is None else start.now + until.total_seconds()
        world, steps = run(
            start,
            self._ctx,
            choose,
            max_deliveries=max_deliveries,
            until=limit,
            on_error=on_error or self.on_error,
            invariant=invariant,
        )
        if limit is not None:
            world = _world.advance_clock(world, limit)
        self._world = world.with_faults(NO_FAULTS)
        return RunResult(self.outcome(), Trace(tuple(steps)), self.now)

    def advance(self, delay: timedelta, **options: Any) -> RunResult:
        """Move the virtual clock `delay` ahead, delivering what falls due."""
        return self.run((), until=delay, **options)

    # -- every execution -----------------------------------------------------

    def exhaust(
        self,
        envelopes: Iterable[Envelope[Any]] = (),
        *,
        faults: Faults = NO_FAULTS,
        max_depth: int = 10_000,
        max_executions: int = 1_000_000,
        max_states: int = 1_000_000,
        on_error: OnError | None = None,
        progress: Progress | None = None,
        invariant: Invariant | None = None,
        naive_search: bool = False,
    ) -> SimulationReport:
        """Explore every delivery order of `envelopes` sent from the current world.

        Returns a `SimulationReport`: the distinct outcomes with one shortest trace
        each, `deterministic`, counts, and `complete=False` if `max_depth`,
        `max_executions` or `max_states` (worlds kept in memory) cut the
        search short. `invariant(outcome)` is checked on every world
        reached: if it raises, `InvariantError` shows a shortest trace
        there. `naive_search=True`
        turns the reductions off (the baseline they are measured against).
        """
        root = _world.send(self._world, self._ctx, envelopes).with_faults(faults)
        on_error = on_error or self.on_error
        if naive_search:
            return naive(
                root,
                self._ctx,
                max_depth=max_depth,
                max_executions=max_executions,
                on_error=on_error,
                invariant=invariant,
            )
        return exhaust(
            root,
            self._ctx,
            max_depth=max_depth,
            max_executions=max_executions,
            max_states=max_states,
            on_error=on_error,
            progress=progress,
            invariant=invariant,
        )

    def check_drops(
        self,
        envelopes: Sequence[Envelope[Any]],
        *,
        drops: int = 1,
        le: Order = at_most,
        **options: Any,
    ) -> CalmCheck:
        """CALM: with up to `drops` messages lost, is every outcome at most (by
        `le`, entity by entity) some fault-free outcome?"""
        clean = self.exhaust(envelopes, **options)
        faulty = self.exhaust(envelopes, faults=Faults(drop=drops), **options)
        return drops_check(clean, faulty, self._init_of, le)

    def check_duplicates(
        self, envelopes: Sequence[Envelope[Any]], *, duplicates: int = 1, **options: Any
    ) -> CalmCheck:
        """CALM: with up to `duplicates` messages delivered twice, is every
        outcome a fault-free outcome?"""
        clean = self.exhaust(envelopes, **options)
        faulty = self.exhaust(envelopes, faults=Faults(duplicate=duplicates), **options)
        return duplicates_check(clean, faulty)

    def _init_of(self, address: Address[Any]) -> object:
        try:
            return self._ctx.init_state(address.key)
        except Exception:
            return None
