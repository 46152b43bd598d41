"""Exhaustive exploration of delivery orders: every distinct outcome, with one
shortest trace each, and the report types. `exhaust` (`_stream`) runs
dynamic partial-order reduction (`_dpor`) and falls back to the stateful
sleep-set search below where DPOR does not apply (a cycle of worlds, an
invariant reading every entity); `naive` is the baseline without reduction.

Design note (the stateful sleep-set search, `sleep_sets`)
-----------
* **Search.** Breadth-first over worlds (`_world.World`), so the first time
  an outcome (or a failure) is found it is by a shortest path of the
  reduced search: its trace is the one people read.
* **Partial-order reduction with sleep sets** (Godefroid). Deliveries to
  different entities commute (activations are pure and per-entity), so
  after exploring event `a` from a world, a later sibling `b` independent
  of `a` puts `a` to sleep in `b`'s subtree: the order "b then a" reaches
  the same worlds as "a then b", already covered. Only orders at one
  entity (and choices of faults, which share a budget) branch. Sleep sets
  keep every reachable quiescent world (every outcome) reachable.
* **Deduplication of visited worlds** (`World.key()`), combined with sleep
  sets the sound way: a world is stored with the sleep set it was reached
  with; reached again with a sleep set that is not a superset, the events
  asleep before but awake now are explored, and the stored set shrinks to
  the intersection. Conservative (smaller) sleep sets are always sound.
* **Counting.** `executions` counts explored paths that reached a quiescent
  world (shared prefixes and suffixes are explored once, so it is far below
  the number of orders); `states` counts distinct worlds; `deliveries`
  counts transitions run. `naive=True` enumerates every order with neither
  reduction nor dedup: the baseline the reduction is measured against.
* **Bounds.** `max_depth` (steps in one execution), `max_executions` and
  `max_states` (worlds kept: the memory bound) make the search stop early
  with `complete=False` and the reason.

Trade-off: traces are not stored per world; a world keeps its parent and
the event that made it, and traces are rebuilt by replaying the (pure,
deterministic) steps from the start when reported.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Literal

from attrs import frozen

from pachytype.simulation._errors import SimulationError, check
from pachytype.simulation._faults import Faults
from pachytype.simulation._trace import Outcome, Step, Trace
from pachytype.simulation._world import (
    Context,
    Event,
    World,
    advance,
    apply,
    enabled,
    independent,
)

OnError = Literal["raise", "dead_letter"]
"""On an activation error: stop with a `SimulationError` (showing the entity,
its state, the messages it received and the trace), or keep the entity's
state, count a dead letter and go on, as the other ecosystems do."""

Search = Literal["dpor", "sleep sets", "naive"]
"""The algorithms `Simulation.exhaust` can search with."""

Invariant = Callable[[Outcome], object]
"""Checked on every world a simulation reaches (with the states of the
entities activated so far); raising (e.g. `assert`) stops the simulation
with an `InvariantError` and a shortest trace to that world."""

Progress = Callable[[int, int], None]
"""Called now and then during a search with (states, executions) so far."""

_PROGRESS_EVERY = 512

_Path = tuple[Event, "_Path"] | None
"""A path of events as a cons list, newest first (O(1) to extend)."""


@frozen
class Found:
    """One distinct outcome, a shortest trace reaching it, and how many
    explored executions ended in it (a naive search keeps no traces). A
    sampled outcome has the `seed` of the execution that reached it (see
    `Simulation.sample` to replay it)."""

    outcome: Outcome
    trace: Trace
    executions: int
    seed: int | None = None


@frozen
class SimulationReport:
    """What `Simulation.exhaust` found.

    `outcomes` lists every distinct outcome (final states) with one shortest
    trace each; `deterministic` is true when there is exactly one. With
    `complete=False` the search hit a bound (`limit` says which) and more
    outcomes may exist.
    """

    outcomes: tuple[Found, ...]
    executions: int
    states: int
    deliveries: int
    dead_letters: int
    complete: bool
    limit: str | None
    faults: Faults
    seconds: float
    naive: bool = False
    strategy: str = "sleep sets"
    """How the space was searched: "dpor", "sleep sets" (and why, when DPOR
    fell back to it), "naive", "random", "pct"."""
    pct_depth: int | None = None
    """A PCT sample's `depth` (replay a sampled outcome with `run(...,
    pct=pct_depth, pct_steps=pct_steps)` and the outcome's `seed`)."""
    pct_steps: int | None = None
    """A PCT sample's `pct_steps` (computed from a typical run if not given)."""

    @property
    def deterministic(self) -> bool:
        """Exactly one outcome (only conclusive when `complete`)."""
        return len(self.outcomes) == 1

    def summary(self) -> str:
        """One line: counts, completeness, determinism."""
        kind = f"{self.strategy} search"
        done = "complete" if self.complete else f"INCOMPLETE ({self.limit})"
        return (
            f"{kind} {done}: {len(self.outcomes)} distinct outcome(s), "
            f"{self.executions:,} executions, {self.states:,} states, "
            f"{self.deliveries:,} deliveries, {self.dead_letters:,} dead letters, "
            f"faults: {self.faults}, {self.seconds:.3f}s"
        )

    def __str__(self) -> str:
        lines = [self.summary()]
        for n, found in enumerate(self.outcomes, 1):
            lines.append(f"outcome {n} ({found.executions:,} executions): {found.outcome}")
        return "\n".join(lines)


class _Search:
    """The state of one breadth-first search (plain data, one per call)."""

    def __init__(
        self, root: World, ctx: Context, on_error: OnError, invariant: Invariant | None = None
    ) -> None:
        self.root = root
        self.ctx = ctx
        self.on_error = on_error
        self.invariant = invariant
        self.worlds: list[World] = [root]
        self.parents: list[tuple[int, Event] | None] = [None]
        self.depths: list[int] = [0]
        self.sleep: list[frozenset[Event]] = [frozenset()]
        self.expanded: list[bool] = [False]
        self.index: dict[Hashable, int] = {root.key(): 0}
        self.outcomes: dict[Hashable, list[int]] = {}  # outcome key -> [world, executions]
        self.executions = 0
        self.deliveries = 0
        self.dead_letters = 0
        self.steps: dict[int, Step] = {}
        self.limit: str | None = None  # why the search stopped early, if it did
        # (node, sleep set to expand with, only these events); sleep None: a
        # first expansion, with the node's stored sleep set.
        self.queue: deque[tuple[int, frozenset[Event] | None, frozenset[Event] | None]] = deque()

    def trace(self, node: int, extra: Step | None = None) -> Trace:
        """The steps from the root to `node` (each node's step built once, from
        its parent's world: outcomes share prefixes)."""
        steps: list[Step] = [] if extra is None else [extra]
        parent = self.parents[node]
        while parent is not None:
            step = self.steps.get(node)
            if step is None:
                step = self.steps[node] = apply(self.worlds[parent[0]], parent[1], self.ctx)[1]
            steps.append(step)
            node = parent[0]
            parent = self.parents[node]
        steps.reverse()
        return Trace(tuple(steps))

    def path(self, node: int) -> list[Event]:
        """The events from the root to `node`."""
        events: list[Event] = []
        parent = self.parents[node]
        while parent is not None:
            events.append(parent[1])
            parent = self.parents[parent[0]]
        events.reverse()
        return events

    def step(self, node: int, event: Event) -> World:
        world, error = advance(self.worlds[node], event, self.ctx)
        self.deliveries += 1
        if error is not None:
            if self.on_error == "raise":
                step = apply(self.worlds[node], event, self.ctx)[1]
                raise failure(step, self.trace(node, step))
            self.dead_letters += 1
        return world

    def arrive(
        self, world: World, parent: int, event: Event, sleep: frozenset[Event]
    ) -> int | None:
        """Record `world`, reached from `parent` by `event` with `sleep`, and
        queue what it still needs explored; return its node if it is a final
        (quiescent) world reached for the first time."""
        key = world.key()
        node = self.index.get(key)
        if world.quiescent:
            self.executions += 1
        if node is None:
            node = len(self.worlds)
            self.index[key] = node
            self.worlds.append(world)
            self.parents.append((parent, event))
            self.depths.append(self.depths[parent] + 1)
            self.sleep.append(sleep)
            self.expanded.append(False)
            if self.invariant is not None:
                self.check(node)
            if world.quiescent:
                self.outcomes.setdefault(world.outcome_key(), [node, 0])[1] += 1
            self.queue.append((node, None, None))
            return node if world.quiescent else None
        if world.quiescent:
            self.outcomes[world.outcome_key()][1] += 1
        stored = self.sleep[node]
        if stored <= sleep:
            return None  # everything awake now was explored (or queued) from there before
        self.sleep[node] = stored & sleep
        if self.expanded[node]:
            # Expanded before with more asleep: explore what was asleep then, awake now.
            self.queue.append((node, stored & sleep, stored - sleep))
        # Not expanded yet: it will be, with the smaller stored sleep set.
        return None

    def check(self, node: int) -> None:
        assert self.invariant is not None
        outcome = self.worlds[node].outcome(self.ctx.addresses)
        check(self.invariant, outcome, lambda: self.trace(node))

    def found(self) -> tuple[Found, ...]:
        result = []
        for node, executions in self.outcomes.values():
            world = self.worlds[node]
            outcome = world.outcome(self.ctx.addresses)
            result.append(Found(outcome, self.trace(node), executions))
        return tuple(result)


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a search allocates millions of
    acyclic tuples and dicts, and collections triggered by them would
    rescan every world kept (half the search time on large searches)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sleep_sets(
    root: World,
    ctx: Context,
    *,
    max_depth: int,
    max_executions: int,
    max_states: int = 1_000_000,
    on_error: OnError = "raise",
    progress: Progress | None = None,
    invariant: Invariant | None = None,
) -> SimulationReport:
    """Explore every delivery order from `root`, breadth first with sleep sets
    and deduplication of worlds (see the module's design note)."""
    started = time.perf_counter()
    search = _Search(root, ctx, on_error, invariant)
    with without_cyclic_gc():
        for _ in walk(search, max_depth, max_executions, max_states, progress):
            pass
    return SimulationReport(
        outcomes=search.found(),
        executions=search.executions,
        states=len(search.worlds),
        deliveries=search.deliveries,
        dead_letters=search.dead_letters,
        complete=search.limit is None,
        limit=search.limit,
        faults=faults_of(root),
        seconds=time.perf_counter() - started,
    )


def walk(
    search: _Search,
    max_depth: int,
    max_executions: int,
    max_states: int,
    progress: Progress | None,
) -> Iterator[int]:
    """Run the sleep-set search, yielding each final world (its node) when
    first reached: breadth first, so by a shortest path. Sets `search.limit`
    if a bound stops it."""
    root = search.root
    if search.invariant is not None:
        search.check(0)
    if root.quiescent:
        search.executions = 1
        search.outcomes[root.outcome_key()] = [0, 1]
        yield 0
    queue = search.queue
    queue.append((0, None, None))
    next_report = _PROGRESS_EVERY
    limit: str | None = None
    while queue:
        node, sleep, only = queue.popleft()
        if search.depths[node] >= max_depth:
            if not search.worlds[node].quiescent:
                limit = f"max_depth={max_depth} reached"
            continue
        if search.executions >= max_executions:
            limit = f"max_executions={max_executions} reached"
            break
        if len(search.worlds) >= max_states:
            limit = f"max_states={max_states} reached"
            break
        if sleep is None:
            sleep = search.sleep[node]
            search.expanded[node] = True
        done: list[Event] = []
        for event in enabled(search.worlds[node]):
            if event in sleep or (only is not None and event not in only):
                continue
            child_sleep = frozenset(u for u in (*sleep, *done) if independent(u, event))
            done.append(event)
            final = search.arrive(search.step(node, event), node, event, child_sleep)
            if final is not None:
                yield final
        if progress is not None and len(search.worlds) >= next_report:
            next_report = len(search.worlds) + _PROGRESS_EVERY
            progress(len(search.worlds), search.executions)
    search.limit = limit


def naive(
    root: World,
    ctx: Context,
    *,
    max_depth: int,
    max_executions: int,
    on_error: OnError = "raise",
    invariant: Invariant | None = None,
) -> SimulationReport:
    """Every order, one by one, with no reduction and no dedup (the baseline)."""
    with without_cyclic_gc():
        return _naive(root, ctx, max_depth, max_executions, on_error, invariant)


def _naive(
    root: World,
    ctx: Context,
    max_depth: int,
    max_executions: int,
    on_error: OnError,
    invariant: Invariant | None,
) -> SimulationReport:
    started = time.perf_counter()
    search = _Search(root, ctx, on_error)
    outcomes: dict[Hashable, list[int]] = {}  # outcome key -> [world, executions]
    limit: str | None = None
    # Depth-first; a path is a cons list (event, rest) so pushing is O(1).
    stack: list[tuple[World, int, _Path]] = [(root, 0, None)]
    while stack:
        world, depth, path = stack.pop()
        if invariant is not None:
            trace = partial(_trace_of, root, path, ctx)
            check(invariant, world.outcome(ctx.addresses), trace)
        events = enabled(world)
        if not events:
            search.executions += 1
            seen = outcomes.setdefault(world.outcome_key(), [len(search.worlds), 0])
            if seen[1] == 0:
                search.worlds.append(world)
            seen[1] += 1
            if search.executions >= max_executions:
                limit = f"max_executions={max_executions} reached"
                break
            continue
        if depth >= max_depth:
            limit = f"max_depth={max_depth} reached"
            continue
        for event in reversed(events):
            new, error = advance(world, event, ctx)
            search.deliveries += 1
            if error is not None:
                if on_error == "raise":
                    steps = tuple(replay(root, [*_events(path), event], ctx))
                    raise failure(steps[-1], Trace(steps))
                search.dead_letters += 1
            stack.append((new, depth + 1, (event, path)))
    found = tuple(
        Found(search.worlds[node].outcome(ctx.addresses), Trace(), n)
        for node, n in outcomes.values()
    )
    return SimulationReport(
        outcomes=found,
        executions=search.executions,
        states=search.deliveries + 1,
        deliveries=search.deliveries,
        dead_letters=search.dead_letters,
        complete=limit is None,
        limit=limit,
        faults=faults_of(root),
        seconds=time.perf_counter() - started,
        naive=True,
        strategy="naive",
    )


def _trace_of(root: World, path: _Path, ctx: Context) -> Trace:
    return Trace(tuple(replay(root, _events(path), ctx)))


def _events(path: _Path) -> list[Event]:
    events: list[Event] = []
    while path is not None:
        event, path = path
        events.append(event)
    events.reverse()
    return events


def replay(root: World, events: list[Event], ctx: Context) -> Iterator[Step]:
    """The steps of `events` applied from `root` (steps are pure: same result)."""
    world = root
    for event in events:
        world, step = apply(world, event, ctx)
        yield step


def failure(step: Step, trace: Trace) -> SimulationError:
    """The error for a step whose activation raised."""
    assert step.error is not None and step.to is not None
    error = SimulationError(step.to, step.before, step.message, step.error, trace)
    error.__cause__ = step.error
    return error


def faults_of(world: World) -> Faults:
    return Faults(
        drop=world.drops, duplicate=world.duplicates, reorder=world.reorder, late=world.late
    )
