"""Searching over several processes (the machine's cores) and merging what
they find into one report.

Design note
-----------
* **Fork, and send back plain data, never pickles.** Workers are forked
  (the registry, the world and the user's entity classes are inherited);
  each writes its result as JSON (numbers, strings, lists) to a pipe: an
  outcome is the index of its frontier world and, per step, the index of
  the step among the events enabled there (read off the worlds on the
  search's path, not replayed). The parent replays those steps once
  (a simulation is deterministic) to get the states, the outcome and the
  trace; nothing a child sends is ever turned into an object but numbers.
  Failures are not shipped across processes: a worker reports that its
  share failed, and the parent runs the sequential search, which raises
  the failure with its shortest trace.
* **Exhaustive search splits at a frontier.** A breadth-first search with
  deduplication runs from the root until one depth holds enough distinct
  worlds (a few per worker); each worker then runs DPOR from its share of
  those worlds as roots. Every execution passes through one frontier world
  (or ends before the frontier: those outcomes are counted by the parent),
  and DPOR from a root is complete, so the union is complete. Work is
  repeated where two frontier worlds lead to equivalent suffixes, so the
  execution count is larger than the sequential search's; outcomes are the
  same.
* Without `fork` (Windows, macOS defaults) or with one worker, callers run
  the sequential search.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import orjson

from pachytype._address import Key
from pachytype.simulation import _dpor as dpor
from pachytype.simulation._explore import Found, SimulationReport, faults_of, replay
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

T = TypeVar("T")


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fork_map(job: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """`[job(i) for i in items]`, one forked process per item, in order. Each
    result must be JSON data: it crosses the process boundary as JSON bytes
    on a pipe (a child that fails sends null; the caller decides)."""
    gc.freeze()  # keep the parent's objects out of the children's collections
    children: list[tuple[int, int]] = []
    try:
        for item in items:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: compute, write, leave without cleanup
                os.close(read)
                _child(job, item, write)
            os.close(write)
            children.append((pid, read))
        results = []
        for pid, read in children:
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            os.waitpid(pid, 0)
            results.append(orjson.loads(data) if data else None)
        return results
    finally:
        gc.unfreeze()


def _child(job: Callable[[T], Any], item: T, write: int) -> None:
    code = 0
    try:
        # Searches allocate millions of acyclic objects: the cyclic collector
        # would rescan them all (see `_explore.without_cyclic_gc`).
        gc.disable()
        data = orjson.dumps(job(item))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


# -- exhaustive search in parallel -------------------------------------------

_PER_WORKER = 8
"""Frontier worlds per worker (more: better balance, more repeated work)."""

Ended = tuple[World, list[Event], int]
"""A quiescent world met before the frontier, the events reaching it, executions."""


class Reached:
    """An outcome from a worker: its final world, the frontier world it was
    reached from, the events from there, how many executions ended in it,
    the events as step indices (see `replay_indices`), and (in the parent) the
    trace steps from the frontier world."""

    __slots__ = ("count", "events", "frontier", "indices", "steps", "world")

    def __init__(
        self,
        world: World,
        frontier: int,
        events: list[Event],
        count: int,
        indices: list[int],
        steps: tuple[Step, ...] = (),
    ) -> None:
        self.world = world
        self.frontier = frontier
        self.events = events
        self.count = count
        self.indices = indices
        self.steps = steps


class Share:
    """What one worker found from its frontier worlds."""

    def __init__(self) -> None:
        self.outcomes: dict[Hashable, Reached] = {}
        self.executions = 0
        self.states = 0
        self.deliveries = 0
        self.dead_letters = 0
        self.limit: str | None = None
        self.failed = False  # an activation error or a broken invariant: rerun sequentially
        self.fallback: str | None = None


def frontier(
    root: World, ctx: Context, size: int, max_depth: int, on_error: str
) -> tuple[list[tuple[World, list[Event], frozenset[Event]]], dict[Hashable, Ended], int]:
    """Distinct worlds at the first depth with at least `size` of them, each
    with the events reaching it and its sleep set (breadth first with sleep
    sets, as `_explore.sleep_sets`); the quiescent worlds met before it; the
    deliveries run. Raises `Failed` if a step raises (`on_error="raise"`)."""
    level: dict[Hashable, tuple[World, list[Event], frozenset[Event]]]
    level = {root.key(): (root, [], frozenset())}
    ended: dict[Hashable, Ended] = {}
    deliveries = 0
    depth = 0
    while level and len(level) < size and depth < max_depth:
        nxt: dict[Hashable, tuple[World, list[Event], frozenset[Event]]] = {}
        for world, path, sleep in level.values():
            events = enabled(world)
            if not events:
                seen = ended.get(world.outcome_key())
                count = 1 if seen is None else seen[2] + 1
                ended[world.outcome_key()] = (world, path if seen is None else seen[1], count)
                continue
            done: list[Event] = []
            for event in events:
                if event in sleep:
                    continue
                child_sleep = frozenset(u for u in (*sleep, *done) if independent(u, event))
                done.append(event)
                new, error = advance(world, event, ctx)
                deliveries += 1
                if error is not None and on_error == "raise":
                    raise Failed
                key = new.key()
                there = nxt.get(key)
                if there is None:
                    nxt[key] = (new, [*path, event], child_sleep)
                else:  # reached two ways: only what is asleep on both stays asleep
                    nxt[key] = (there[0], there[1], there[2] & child_sleep)
        level = nxt
        depth += 1
    return list(level.values()), ended, deliveries


class Failed(Exception):
    """A step raised or an invariant broke: the sequential search reports it."""


def explore_share(
    roots: Sequence[tuple[World, frozenset[Event]]],
    ctx: Context,
    first: int,
    *,
    on_error: str,
    invariant: Callable[[Outcome], object] | None,
    max_depth: int,
    max_states: int,
) -> Share:
    """DPOR from each of `roots` (numbered from `first`), merged."""
    share = Share()
    for n, (root, sleep) in enumerate(roots, first):
        visible: set[Key] = set()
        while True:
            search = dpor.Search(
                root,
                ctx,
                on_error=on_error,
                invariant=invariant,
                max_depth=max_depth,
                max_states=max_states,
                sleep=sleep,
            )
            search.visible = set(visible)
            try:
                for world, events in search.executions():
                    share.executions += 1
                    key = world.outcome_key()
                    seen = share.outcomes.get(key)
                    if seen is None or len(events) < len(seen.events):
                        # The step indices from the worlds on the path: no replay.
                        path = search.path_worlds()
                        indices = [enabled(path[k]).index(e) for k, e in enumerate(events)]
                        count = 0 if seen is None else seen.count
                        share.outcomes[key] = Reached(world, n, events, count + 1, indices)
                    else:
                        seen.count += 1
            except dpor.Restart:
                visible = search.visible
                continue
            except dpor.Fallback as why:
                share.fallback = str(why)
                return share
            break
        if search.failure is not None:
            share.failed = True
            return share
        share.states += len(search.states)
        share.deliveries += search.deliveries
        share.dead_letters += search.dead_letters
        share.limit = share.limit or search.limit
    return share


def exhaust(
    root: World,
    ctx: Context,
    *,
    workers: int,
    max_depth: int,
    max_executions: int,
    max_states: int,
    on_error: str,
    invariant: Callable[[Outcome], object] | None,
    sequential: Callable[[], SimulationReport],
) -> SimulationReport:
    """`exhaust` (`_stream.Exploration`) over `workers` processes (see the design note);
    `sequential` is the one-process search, run where this one cannot help."""
    started = time.perf_counter()
    try:
        worlds, ended, deliveries = frontier(root, ctx, workers * _PER_WORKER, max_depth, on_error)
    except Failed:
        return sequential()
    if invariant is not None or len(worlds) < 2:
        # Invariants are checked on every world: the frontier's too. Simple:
        # leave invariants to the sequential search.
        return sequential()
    roots = [w for w, _, _ in worlds]
    chunks = [list(range(k, len(roots), workers)) for k in range(workers)]

    def job(indices: list[int]) -> dict[str, Any]:
        return _plain(search(indices), roots, ctx)

    def search(indices: list[int]) -> Share:
        total = Share()
        for i in indices:
            share = explore_share(
                [(roots[i], worlds[i][2])],
                ctx,
                i,
                on_error=on_error,
                invariant=invariant,
                max_depth=max_depth - len(worlds[i][1]),
                max_states=max_states,
            )
            if share.failed or share.fallback is not None:
                return share
            _merge(total, share)
        return total

    plain = fork_map(job, chunks)
    if any(p is None for p in plain):
        return sequential()  # a worker died: the one-process search says why
    shares = [_share(p, roots, ctx) for p in plain]
    if any(s.failed or s.fallback is not None for s in shares):
        return sequential()
    total = Share()
    for share in shares:
        _merge(total, share)
    # Every frontier world is at the same depth: outcomes reached before it
    # have the shorter traces; among the workers', the shortest suffix wins.
    found = [
        Found(world.outcome(ctx.addresses), Trace(tuple(replay(root, path, ctx))), count)
        for world, path, count in ended.values()
    ]
    prefixes: dict[int, tuple[Step, ...]] = {}  # the steps to each frontier world
    for key, reached in total.outcomes.items():
        if key not in ended:
            n = reached.frontier
            if n not in prefixes:
                prefixes[n] = tuple(replay(root, worlds[n][1], ctx))
            trace = Trace((*prefixes[n], *reached.steps))
            found.append(Found(reached.world.outcome(ctx.addresses), trace, reached.count))
    executions = total.executions + sum(c for _, _, c in ended.values())
    limit = total.limit
    if executions > max_executions:
        limit = limit or f"max_executions={max_executions} reached"
    return SimulationReport(
        outcomes=tuple(found),
        executions=executions,
        states=total.states + len(worlds),
        deliveries=total.deliveries + deliveries,
        dead_letters=total.dead_letters,
        complete=limit is None,
        limit=limit,
        faults=faults_of(root),
        seconds=time.perf_counter() - started,
        strategy=f"dpor, {workers} processes",
    )


def replay_indices(
    world: World, indices: Sequence[int], ctx: Context
) -> tuple[World, list[Event], tuple[Step, ...]]:
    """The world reached by the steps `indices` (each the index of a step
    among the events enabled where it is taken), the events taken and their
    trace steps."""
    events = []
    steps = []
    for i in indices:
        event = enabled(world)[i]
        events.append(event)
        world, step = apply(world, event, ctx)
        steps.append(step)
    return world, events, tuple(steps)


def _plain(share: Share, roots: Sequence[World], ctx: Context) -> dict[str, Any]:
    return {
        "outcomes": [[r.frontier, r.indices, r.count] for r in share.outcomes.values()],
        "executions": share.executions,
        "states": share.states,
        "deliveries": share.deliveries,
        "dead_letters": share.dead_letters,
        "limit": share.limit,
        "failed": share.failed,
        "fallback": share.fallback,
    }


def _share(plain: dict[str, Any], roots: Sequence[World], ctx: Context) -> Share:
    share = Share()
    for n, plain_indices, count in plain["outcomes"]:
        indices = [int(i) for i in plain_indices]
        world, events, steps = replay_indices(roots[int(n)], indices, ctx)
        one = Share()
        one.outcomes[world.outcome_key()] = Reached(
            world, int(n), events, int(count), indices, steps
        )
        _merge(share, one)
    share.executions = int(plain["executions"])
    share.states = int(plain["states"])
    share.deliveries = int(plain["deliveries"])
    share.dead_letters = int(plain["dead_letters"])
    share.limit = plain["limit"]
    share.failed = bool(plain["failed"])
    share.fallback = plain["fallback"]
    return share


def _merge(total: Share, share: Share) -> None:
    for key, reached in share.outcomes.items():
        seen = total.outcomes.get(key)
        if seen is None:
            total.outcomes[key] = reached
        elif len(reached.events) < len(seen.events):
            reached.count += seen.count
            total.outcomes[key] = reached
        else:
            seen.count += reached.count
    total.executions += share.executions
    total.states += share.states
    total.deliveries += share.deliveries
    total.dead_letters += share.dead_letters
    total.limit = total.limit or share.limit
