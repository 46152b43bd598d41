"""`exhaust` as a stream: `Exploration` yields executions one by one while
the search runs, for callers who want to stop early; `Simulation.exhaust`
drains the same search to build its report.

Design note
-----------
* **One search, two consumers.** An `Exploration` runs DPOR (`_dpor`) in a
  generator: each `next()` runs the search until it has finished one more
  execution, and nothing runs ahead of the caller, so stopping (breaking
  out of the loop, `close()`) stops the search. Counters (`states`,
  `executions`, `deliveries`) and the outcomes met so far are kept as it
  goes: `report()` says what was explored, complete or not.
  `Simulation.exhaust` drains it (building no trace per execution, with the
  cyclic garbage collector paused) and returns `report()`.
* **Failures.** A drained search raises the shortest failure once it has
  seen everything (the report's promise). A stream cannot wait for the end:
  an activation error (with `on_error="raise"`) or a broken invariant is
  raised when the execution that met it ends, with the steps it depends on
  (its causal past) as its trace: short, not always the shortest.
* **Restarts.** An invariant that turns out to look at more entities makes
  DPOR search again with them visible; executions already yielded (known
  by their steps) are not yielded again. Kept only with an invariant.
* **Fallback.** Where DPOR does not apply (a cycle of worlds, an invariant
  reading every entity), the stateful sleep-set search (`_explore`) takes
  over, breadth first: it yields each distinct final world once, when it
  is first reached (by a shortest path), and skips final worlds the DPOR
  part yielded already. Its counters replace DPOR's.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Hashable, Iterator
from typing import Any

from attrs import frozen

from pachytype._address import Key
from pachytype.simulation import _dpor as dpor
from pachytype.simulation._explore import (
    Invariant,
    OnError,
    Progress,
    SimulationReport,
    _Search,
    faults_of,
    replay,
    walk,
    without_cyclic_gc,
)
from pachytype.simulation._trace import Outcome, Trace
from pachytype.simulation._world import Context, Event, World

_PROGRESS_EVERY = 512


@frozen
class Execution:
    """One execution an exploration found: its final states and its steps."""

    outcome: Outcome
    trace: Trace


class Exploration(Iterator[Execution]):
    """The executions of an exhaustive search, yielded as they are found.

    >>> stream = sim.explore(envelopes)                        # doctest: +SKIP
    >>> for execution in stream:                               # doctest: +SKIP
    ...     if bad(execution.outcome):
    ...         print(execution.trace)
    ...         break                                          # the search stops here
    >>> stream.states, stream.executions                       # doctest: +SKIP
    >>> stream.report()        # what was explored so far (complete only if drained)

    Stop iterating to stop the search. `states`, `executions`, `deliveries`
    and `dead_letters` count what has run so far; `report()` is the
    `SimulationReport` of it (`complete=False` until the stream is drained,
    or if a bound cut it short).
    """

    def __init__(
        self,
        root: World,
        ctx: Context,
        *,
        max_depth: int,
        max_executions: int,
        max_states: int,
        on_error: OnError,
        invariant: Invariant | None = None,
        progress: Progress | None = None,
        eager: bool = True,
    ) -> None:
        self.root = root
        self.ctx = ctx
        self.max_depth = max_depth
        self.max_executions = max_executions
        self.max_states = max_states
        self.on_error = on_error
        self.invariant = invariant
        self.progress = progress
        self.eager = eager
        self.strategy = "dpor"
        """How the space is searched: "dpor", or "sleep sets (why DPOR could not)"."""
        self.executions = 0
        self.limit: str | None = None
        self.finished = False
        """Whether the search ran to its end (or to a bound)."""
        self._dpor: dpor.Search | None = None
        self._bfs: _Search | None = None
        # outcome key -> [final world, least execution there (`_dpor.shorter`), executions]
        self._outcomes: dict[Hashable, list[Any]] = {}
        self._started = time.perf_counter()
        self._steps = self._search()

    # -- counters --------------------------------------------------------------

    @property
    def states(self) -> int:
        """Distinct worlds reached so far."""
        if self._bfs is not None:
            return len(self._bfs.worlds)
        return 0 if self._dpor is None else len(self._dpor.states)

    @property
    def deliveries(self) -> int:
        """Transitions run so far."""
        if self._bfs is not None:
            return self._bfs.deliveries
        return 0 if self._dpor is None else self._dpor.deliveries

    @property
    def dead_letters(self) -> int:
        """Activations that raised so far (with `on_error="dead_letter"`)."""
        if self._bfs is not None:
            return self._bfs.dead_letters
        return 0 if self._dpor is None else self._dpor.dead_letters

    # -- the stream ------------------------------------------------------------

    def __iter__(self) -> Exploration:
        return self

    def __next__(self) -> Execution:
        world, events = next(self._steps)
        trace = Trace(tuple(replay(self.root, events, self.ctx)))
        return Execution(world.outcome(self.ctx.addresses), trace)

    def close(self) -> None:
        """Stop the search (also done when the exploration is dropped)."""
        self._steps.close()

    def drain(self) -> SimulationReport:
        """Run the search to its end (or a bound) and report it, raising the
        shortest failure found; what `Simulation.exhaust` does."""
        with without_cyclic_gc():
            for _ in self._steps:
                pass
        return self.report()

    def report(self) -> SimulationReport:
        """What was explored so far: the distinct outcomes with a shortest
        trace each, the counts, and `complete` if the search ran to its end."""
        limit = self.limit
        if not self.finished:
            limit = f"stopped by the caller after {self.executions:,} executions"
        if self._bfs is not None:
            found = self._bfs.found()
        else:
            found = dpor.found(
                self.root, self.ctx, ((w, p, n) for w, p, n in self._outcomes.values())
            )
        return SimulationReport(
            outcomes=found,
            executions=self.executions,
            states=self.states,
            deliveries=self.deliveries,
            dead_letters=self.dead_letters,
            complete=limit is None,
            limit=limit,
            faults=faults_of(self.root),
            seconds=time.perf_counter() - self._started,
            strategy=self.strategy,
        )

    # -- the search ------------------------------------------------------------

    def _search(self) -> Generator[tuple[World, list[Event]]]:
        yielded: set[int] | None = None if self.invariant is None else set()
        finals: set[int] = set()  # final worlds yielded, for a fallback to skip
        visible: set[Key] = set()
        next_report = _PROGRESS_EVERY
        while True:
            search = dpor.Search(
                self.root,
                self.ctx,
                on_error=self.on_error,
                invariant=self.invariant,
                max_depth=self.max_depth,
                max_states=self.max_states,
            )
            search.visible = set(visible)
            self._dpor = search
            try:
                for world, events in search.executions():
                    if self.eager and search.failure is not None:
                        search.raise_failure()
                    if yielded is not None:
                        if hash(tuple(events)) in yielded:
                            continue  # yielded before a restart
                        yielded.add(hash(tuple(events)))
                    self._count(world, tuple(search.indices))
                    finals.add(hash(world.key()))
                    if self.progress is not None and (
                        len(search.states) >= next_report or self.executions % _PROGRESS_EVERY == 0
                    ):
                        next_report = len(search.states) + _PROGRESS_EVERY
                        self.progress(len(search.states), self.executions)
                    yield world, events
                    if self.executions >= self.max_executions:
                        self.limit = f"max_executions={self.max_executions} reached"
                        break
            except dpor.Restart:
                visible = search.visible
                continue
            except dpor.Fallback as why:
                yield from self._fallback(str(why), finals)
                return
            break
        search.raise_failure()
        self.limit = self.limit or search.limit
        self.finished = True

    def _count(self, world: World, places: dpor.Places) -> None:
        self.executions += 1
        key = world.outcome_key()
        seen = self._outcomes.get(key)
        if seen is None:
            self._outcomes[key] = [world, places, 1]
        else:
            seen[2] += 1
            if dpor.shorter(places, seen[1]):
                seen[0], seen[1] = world, places

    def _fallback(self, why: str, finals: set[int]) -> Iterator[tuple[World, list[Event]]]:
        self.strategy = f"sleep sets ({why})"
        bfs = _Search(self.root, self.ctx, self.on_error, self.invariant)
        self._bfs = bfs
        self._outcomes = {}
        search = walk(bfs, self.max_depth, self.max_executions, self.max_states, self.progress)
        for node in search:
            self.executions = bfs.executions
            world = bfs.worlds[node]
            if hash(world.key()) not in finals:
                yield world, bfs.path(node)
        self.executions = bfs.executions
        self.limit = bfs.limit
        self.finished = True
