"""`Simulation`: run a registry's entities deterministically, explore every
delivery order, inject faults, and move a virtual clock.

The facade over the pure core (`_world`, `_run`, `_explore`, `_calm`): it
keeps the current world between runs (so tests can send, run, look, advance
time, and send again) and turns results into the public report types.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

from attrs import frozen

from pachytype._address import Address, Envelope, Ref
from pachytype._clock import Clock
from pachytype._errors import InitError
from pachytype._registry import Registry
from pachytype.simulation import _liveness, _parallel, _parallel_dpor, _sample, _world
from pachytype.simulation._calm import CalmCheck, Order, at_most, drops_check, duplicates_check
from pachytype.simulation._driver import Driver
from pachytype.simulation._ecosystem import SimulatedEcosystem
from pachytype.simulation._explore import (
    Found,
    Invariant,
    OnError,
    Progress,
    Search,
    SimulationReport,
    naive,
    sleep_sets,
)
from pachytype.simulation._faults import NO_FAULTS, Faults
from pachytype.simulation._liveness import Property
from pachytype.simulation._run import Chooser, run, scheduled, seeded
from pachytype.simulation._run import pct as pct_chooser
from pachytype.simulation._sample import Strategy as SampleStrategy
from pachytype.simulation._stream import Exploration
from pachytype.simulation._trace import Outcome, Step, Trace
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


class _Shown:
    """A run as hypothesis shows it in a failing example's notes: rendered
    only if hypothesis reports it (`note` formats lazily, by `repr`)."""

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def __repr__(self) -> str:
        r = self.result
        head = f"simulation run ({len(r.trace)} steps, ends at {r.now}):"
        return f"{head}\n{r.trace}\n  states: {r.outcome}"


def _note_for_hypothesis(result: RunResult) -> None:
    """Inside a hypothesis test, note the run's trace: a failing example then
    prints every step, whatever pytest does to long reprs."""
    control = sys.modules.get("hypothesis.control")
    if control is None:
        return  # hypothesis is not in use (it is not a runtime dependency)
    if control._current_build_context.value is None:  # not inside a test
        return
    control.note(_Shown(result))


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
        self._driver = Driver(self)
        """Delivers the world for its open ecosystem views, and keeps what
        they share (dead letters, events) while none is open."""

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
        return self._world.outcome(self._ctx.addresses)

    @property
    def pending(self) -> int:
        """Messages in flight or waiting for their delay."""
        return self._world.pending()

    def ecosystem(self, clock: Clock | None = None) -> SimulatedEcosystem:
        """A view of this simulation behind the async `Ecosystem` interface
        (`send`, `call`, `state`, `follow`, ...): shuffled, seeded delivery
        orders for code written against any ecosystem. Delays wait on
        `clock` (the system clock by default; a `ManualClock` makes them
        instant).

        Several views may be open at once: they share the world (states,
        timers, dead letters, events), one seeded delivery order and one
        clock (a view given none takes the open views'; one given another
        raises `ValueError`). Each has its own calls, follows and event
        streams, which end when that view closes."""
        return SimulatedEcosystem(self, clock)

    def reset(self) -> None:
        """Forget every state and message; the clock goes back to zero."""
        self._world = World.empty()
        self._driver.reset()

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
        pct: int | None = None,
        pct_steps: int = 100,
    ) -> RunResult:
        """Send `envelopes`, then deliver until nothing is in flight, firing
        delayed envelopes as the virtual clock jumps to them.

        The order is drawn from the seeded generator (uniformly, or with
        `pct=d` by PCT with d - 1 priority changes among the first
        `pct_steps` steps), or taken from `schedule` (see
        `pachytype.simulation.strategies`). `faults` are
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
        choose: Chooser
        if schedule is not None:
            choose = scheduled(schedule)
        elif pct is not None:
            choose = pct_chooser(self._rng, pct, pct_steps, fault_rate)
        else:
            choose = seeded(self._rng, fault_rate)
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
        result = RunResult(self.outcome(), Trace(tuple(steps)), self.now)
        _note_for_hypothesis(result)
        return result

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
        search: Search = "dpor",
        workers: int = 1,
        eventually: Property | None = None,
    ) -> SimulationReport:
        """Explore every delivery order of `envelopes` sent from the current world.

        Returns a `SimulationReport`: the distinct outcomes with one shortest trace
        each, `deterministic`, counts, and `complete=False` if `max_depth`,
        `max_executions` or `max_states` (worlds kept in memory) cut the
        search short. `invariant(outcome)` is checked on every world
        reached: if it raises, `InvariantError` shows a shortest trace
        there.

        `search` picks the algorithm: "dpor" (dynamic partial-order
        reduction: one execution per class of equivalent orders, depth
        first; it falls back to "sleep sets" on a cycle of worlds or an
        invariant that reads every entity, and `report.strategy` says so),
        "sleep sets" (breadth first over every distinct world: more states,
        same outcomes) or "naive" (every order, no reduction: the baseline,
        also `naive_search=True`).

        `eventually=p` is a liveness property (`p(outcome) -> bool`): every
        execution must end in a world where it holds, and no fair cycle of
        worlds where it is false may go on forever (fair: a message in
        flight all along the cycle is delivered in it, and the clock moves
        if a timer is set; see `pachytype.simulation._liveness`); otherwise
        `LivenessError` shows the shortest trace (and the cycle).

        `workers=n` runs the DPOR search over n forked processes (0: one
        per core) that hand subtrees to each other: the same report as one
        process (outcomes, executions per outcome, traces), faster on
        large searches (see `pachytype.simulation._parallel_dpor`). With an
        `invariant`, or where a failure is found, one process searches.

        To stop early (at the first bad outcome, after so many executions),
        iterate `explore(...)` instead: the same search, as a stream.
        """
        root = _world.send(self._world, self._ctx, envelopes).with_faults(faults)
        on_error = on_error or self.on_error
        if search not in ("dpor", "sleep sets", "naive"):
            raise ValueError(f"search must be 'dpor', 'sleep sets' or 'naive', got {search!r}")
        if naive_search or search == "naive":
            return naive(
                root,
                self._ctx,
                max_depth=max_depth,
                max_executions=max_executions,
                on_error=on_error,
                invariant=invariant,
            )

        def sequential() -> SimulationReport:
            if search == "sleep sets":
                return sleep_sets(
                    root,
                    self._ctx,
                    max_depth=max_depth,
                    max_executions=max_executions,
                    max_states=max_states,
                    on_error=on_error,
                    progress=progress,
                    invariant=invariant,
                )
            return Exploration(
                root,
                self._ctx,
                max_depth=max_depth,
                max_executions=max_executions,
                max_states=max_states,
                on_error=on_error,
                invariant=invariant,
                progress=progress,
                eager=False,
            ).drain()

        workers = _parallel.default_workers() if workers == 0 else workers
        if workers > 1 and search == "dpor" and invariant is None and _parallel.can_fork():
            report = _parallel_dpor.exhaust(
                root,
                self._ctx,
                workers=workers,
                max_depth=max_depth,
                max_executions=max_executions,
                max_states=max_states,
                on_error=on_error,
                sequential=sequential,
            )
        else:
            report = sequential()
        if eventually is not None:
            _liveness.check_terminal(report, eventually)
            if _liveness.may_cycle(report):
                _liveness.check_cycles(root, self._ctx, eventually, max_states)
        return report

    def sample(
        self,
        envelopes: Iterable[Envelope[Any]] = (),
        *,
        executions: int = 1000,
        seed: int | None = None,
        strategy: SampleStrategy = "random",
        depth: int = 3,
        pct_steps: int | None = None,
        faults: Faults = NO_FAULTS,
        fault_rate: float = 0.2,
        max_deliveries: int = 100_000,
        on_error: OnError | None = None,
        invariant: Invariant | None = None,
        workers: int = 1,
        eventually: Property | None = None,
    ) -> SimulationReport:
        """Run `executions` executions of `envelopes` in sampled orders: for
        state spaces too large to `exhaust`.

        `strategy="random"` picks each next delivery uniformly;
        `strategy="pct"` is PCT (see `run`) with `depth` (bugs needing up to
        `depth` ordering constraints are likely found). Each execution has
        its own seed derived from `seed` (default: the simulation's), shown
        as `Found.seed` and in the note of a failure, and replayable with
        `Simulation(registry, seed=that).run(envelopes, faults=...,
        fault_rate=..., pct=depth, pct_steps=...)` from the same starting
        world (`report.pct_depth` and `report.pct_steps` give the PCT
        settings used). `workers=n` samples over n processes (0: one per
        core). `eventually=p`: every sampled execution must end where `p`
        holds, else `LivenessError` (with a note saying how to replay it);
        cycles are not looked for (an execution that never ends raises
        `RunawayError` after `max_deliveries`). The report is never
        `complete`.
        """
        root = _world.send(self._world, self._ctx, envelopes).with_faults(faults)
        if strategy not in ("random", "pct"):
            raise ValueError(f"strategy must be 'random' or 'pct', got {strategy!r}")
        report = _sample.sample(
            root,
            self._ctx,
            executions=executions,
            seed=self.seed if seed is None else seed,
            strategy=strategy,
            depth=depth,
            steps=pct_steps,
            fault_rate=fault_rate,
            max_deliveries=max_deliveries,
            on_error=on_error or self.on_error,
            invariant=invariant,
            workers=_parallel.default_workers() if workers == 0 else workers,
        )
        if eventually is not None:

            def replay(found: Found) -> str:
                pct = ""
                if report.pct_depth is not None:
                    pct = f", pct={report.pct_depth}, pct_steps={report.pct_steps}"
                return (
                    f"replay it: Simulation(registry, seed={found.seed}).run(envelopes, "
                    f"faults={report.faults!r}, fault_rate={fault_rate}{pct}) from the same "
                    f"starting world"
                )

            _liveness.check_terminal(report, eventually, note=replay)
        return report

    def explore(
        self,
        envelopes: Iterable[Envelope[Any]] = (),
        *,
        faults: Faults = NO_FAULTS,
        max_depth: int = 10_000,
        max_executions: int = 1_000_000,
        max_states: int = 1_000_000,
        on_error: OnError | None = None,
        invariant: Invariant | None = None,
        progress: Progress | None = None,
    ) -> Exploration:
        """`exhaust` as a stream: the executions of the same search, yielded
        one by one as it finds them, each with its final `outcome` and its
        `trace`. Stop iterating and the search stops: nothing runs ahead.

        >>> stream = sim.explore(envelopes, faults=Faults(drop=1))   # doctest: +SKIP
        >>> for execution in stream:                                 # doctest: +SKIP
        ...     if execution.outcome.state(refs.stock("shelf")) < 0:
        ...         print(execution.trace)                           # the order that did it
        ...         break
        >>> stream.executions, stream.states                         # doctest: +SKIP
        (3, 19)
        >>> stream.report().complete                                 # doctest: +SKIP
        False

        The `Exploration` counts what ran so far (`states`, `executions`,
        `deliveries`) and `report()` gives the `SimulationReport` of it.
        An activation error (with `on_error="raise"`) or a broken
        `invariant` is raised when the execution that met it ends, with the
        steps it depends on as its trace (`exhaust` waits for the end and
        raises the shortest). On a system whose worlds form a cycle, DPOR
        gives way to the sleep-set search, which yields each distinct final
        world once. Liveness (`eventually=`) and `workers=` need the whole
        search: use `exhaust`.
        """
        root = _world.send(self._world, self._ctx, envelopes).with_faults(faults)
        return Exploration(
            root,
            self._ctx,
            max_depth=max_depth,
            max_executions=max_executions,
            max_states=max_states,
            on_error=on_error or self.on_error,
            invariant=invariant,
            progress=progress,
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
