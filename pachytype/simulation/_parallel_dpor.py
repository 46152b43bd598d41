"""Parallel DPOR: one search tree, explored by several forked processes that
hand subtrees to each other as they go (`Simulation.exhaust(workers=n)`).

Design note
-----------
* **The same search, split by subtrees.** A DPOR search (`_dpor.Search`) is
  a depth-first walk whose frames each hold a backtrack set (steps still
  to explore there) and a sleep set (steps started there, or asleep).
  Sibling subtrees are independent work once started: a subtree's sleep
  set depends only on the siblings started before it, not on whether they
  are finished. So a frame's pending steps can be explored by another
  process, and the union is the sequential search with its siblings in
  another order: source-DPOR with sleep sets explores each class of
  equivalent executions exactly once, whatever the order, so the
  executions, the outcomes and the executions per outcome are the
  sequential search's (tests/test_simulation_parallel.py checks them on
  several workloads and worker counts).
* **Who owns a frame.** The coordinator (the calling process) owns the
  frames handed to it; a worker owns the frames below its task. The
  calling process is also worker 0, so `workers=n` forks n - 1 processes
  and n processes use n cores: between two of its own executions it
  serves the others (messages, tasks, the hungry flag). A task is
  a path from the root (`_dpor.Hop`s: at each frame the step taken, the
  siblings started before it, the backtrack set as last known) whose last
  step is new; the worker replays the path and searches the subtree. A
  race a worker finds with a step of a frame it does not own goes to the
  coordinator as the *initials* to add one of; the coordinator applies the
  sequential rule to its frame (skip if one is there already; prefer one
  that is not asleep) and starts a task for a new step.
* **Work stealing by handing over.** When a worker is idle and no task is
  queued, the coordinator raises a shared "hungry" flag. A busy worker
  that sees it (after each execution) hands its shallowest frames down to
  the first one with pending steps over to the coordinator, which queues
  those steps as tasks; the worker goes on with the subtree it is in. The
  shallowest pending steps are the largest subtrees: few hand-overs.
* **Plain data across processes, never pickles.** Messages are JSON lines
  on pipes: steps are places among the steps enabled at a frame (the same
  in every process: worlds and their steps are deterministic), frames are
  numbers chosen by their owner. Each new outcome (the places of its
  least execution) is sent as found, and the coordinator replays it,
  sharing prefixes with the previous one from that worker, to rebuild its
  outcome and trace. Replaying comes before searching in the calling
  process (it is work only it can do), so it is done when the search is;
  where every execution is its own outcome it costs about a third of the
  work, and the forked workers search more.
* **Deterministic report.** The shortest trace of an outcome is the least
  by (length, places), and outcomes are sorted that way, as in the
  sequential search: the report is the same for any number of workers.
* **What goes back to one process.** An invariant (checked on every world,
  with restarts as it reveals what it reads), an activation error with
  `on_error="raise"` (the sequential search reports the shortest failure)
  and a search DPOR cannot do (a cycle of worlds, late messages) run the
  sequential search, which raises or falls back exactly as with one
  process. Bounds (`max_executions`, `max_states`) are checked on counters
  the processes share, so a bounded search may overshoot a little.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import mmap
import os
import selectors
import signal
import struct
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, NamedTuple

import orjson

from pachytype.simulation import _dpor as dpor
from pachytype.simulation._explore import Found, SimulationReport, faults_of, without_cyclic_gc
from pachytype.simulation._trace import Outcome, Step, Trace
from pachytype.simulation._world import Context, World

_HUNGRY = 0  # byte: a worker is idle and no task is queued
_STOP = 1  # byte: stop searching (a failure, a fallback or a bound)
_COUNTERS = 8  # per worker, two 8-byte counters: executions, states
_BOUNDS_EVERY = 16  # executions between looks at the shared bounds
_SEEN_BATCH = 32  # executions to replay sent together
_REPLAY_BATCH = 16  # executions the coordinator replays between looks at its pipes
_SERVE_EVERY = 0.0005  # seconds between looks at the pipes while searching here
_BACKLOG = 64  # executions to replay that make the coordinator replay before searching on


class _Node:
    """A frame the coordinator owns: steps as places among those enabled there."""

    __slots__ = ("backtrack", "begun", "here", "parent", "step")

    def __init__(
        self,
        parent: int | None,
        step: int | None,
        inherited: Iterable[int],
        begun: list[int],
        backtrack: Iterable[int],
    ) -> None:
        self.parent = parent
        self.step = step  # the step from the parent frame to this one
        self.begun = begun  # steps started here, in order
        self.here = set(inherited) | set(begun)  # asleep or started: not to start again
        self.backtrack = dict.fromkeys(backtrack)


class _Coordinator:
    """The frames handed over and the tasks queued from them."""

    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.queue: deque[tuple[int, int]] = deque()

    def hops(self, node: int, step: int) -> list[list[Any]]:
        """The task of exploring `step` at `node`: the path from the root."""
        path: list[list[Any]] = []
        at: int | None = node
        while at is not None:
            frame = self.nodes[at]
            before = frame.begun[: frame.begun.index(step)]
            path.append([at, before, list(frame.backtrack), step])
            at, step = frame.parent, frame.step  # type: ignore[assignment]
        path.reverse()
        return path

    def start(self, node: int, step: int) -> None:
        frame = self.nodes[node]
        frame.begun.append(step)
        frame.here.add(step)
        self.queue.append((node, step))

    def add(self, node: int, initials: list[int]) -> None:
        """A worker's race at `node`: make sure one of `initials` is explored."""
        frame = self.nodes[node]
        if not initials or any(q in frame.backtrack for q in initials):
            return
        awake = [q for q in initials if q not in frame.here]
        q = (awake or initials)[0]
        frame.backtrack[q] = None
        if awake:
            self.start(node, q)

    def take(self, frames: list[list[Any]]) -> None:
        """Frames a worker hands over: queue their pending steps."""
        for node, parent, step, inherited, begun, backtrack in frames:
            self.nodes[node] = _Node(parent, step, inherited, begun, backtrack)
        for node, *_ in frames:
            frame = self.nodes[node]
            for q in [q for q in frame.backtrack if q not in frame.here]:
                self.start(node, q)


# -- a worker ------------------------------------------------------------------


class _Worker:
    """One worker (a forked process, or the calling one): runs the tasks it
    is sent, reports as it goes (`emit`)."""

    def __init__(
        self,
        search: dpor.Search,
        me: int,
        workers: int,
        shared: mmap.mmap,
        bounds: tuple[int, int],
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.search = search
        self.max_executions, self.max_states = bounds
        self.me = me
        self.workers = workers
        self.shared = shared
        self.emit = emit
        self.serving: Callable[[], None] | None = None
        """Run after each execution (the calling process serves the others)."""
        self.serial = itertools.count()
        self.ids: list[int] = []  # the coordinator's number for each frame below `base`
        # outcome key -> [places of its shortest execution, executions]
        self.outcomes: dict[Hashable, list[Any]] = {}
        self.executions = 0
        self.limit: str | None = None
        self.seen: list[list[int]] = []  # new least executions, not sent yet

    def send(self, message: dict[str, Any]) -> None:
        if self.seen:
            message["seen"] = self.seen
            self.seen = []
        self.emit(message)

    def serve(self, tasks: Iterator[bytes]) -> None:
        for line in tasks:
            message = orjson.loads(line)
            if "finish" in message:
                self.send({"result": self.result()})
                return
            self.task([dpor.Hop(*hop) for hop in message["task"]])

    def task(self, hops: list[dpor.Hop]) -> None:
        search = self.search
        try:
            search.start(hops)
            self.ids = [hop.node for hop in hops]
            for world, _ in search.run():
                self.count(world)
                if self.shared[_STOP]:
                    break
                if search.failure is not None:
                    break
                if self.serving is not None:
                    self.serving()
                if self.shared[_HUNGRY]:
                    self.hand_over()
                elif len(search.outbox) > 1024:
                    self.send({"add": self.flush()})
        except dpor.Fallback as why:
            self.send({"fallback": str(why)})
            return
        if search.failure is not None:
            self.send({"failed": True})
            return
        if search.stopped:
            self.limit = self.limit or search.limit
            self.shared[_STOP] = 1
        self.limit = self.limit or search.limit
        self.send({"add": self.flush(), "done": True})

    def count(self, world: World) -> None:
        self.executions += 1
        places = self.search.indices
        key = world.outcome_key()
        seen = self.outcomes.get(key)
        if seen is None:
            self.outcomes[key] = [list(places), 1]
            self.seen.append(list(places))
        else:
            seen[1] += 1
            if (len(places), places) < (len(seen[0]), seen[0]):
                seen[0] = list(places)
                self.seen.append(list(places))
        if len(self.seen) >= _SEEN_BATCH:
            self.send({})
        states = len(self.search.states)
        struct.pack_into("qq", self.shared, _COUNTERS + 16 * self.me, self.executions, states)
        if self.executions % _BOUNDS_EVERY == 0:
            self.bounds()

    def bounds(self) -> None:
        """Stop every worker if the executions or states of all reach a bound
        (states are counted per process: a world two processes met counts twice)."""
        executions = states = 0
        for me in range(self.workers):
            e, s = struct.unpack_from("qq", self.shared, _COUNTERS + 16 * me)
            executions += e
            states += s
        if executions >= self.max_executions:
            self.limit = self.limit or f"max_executions={self.max_executions} reached"
        elif states >= self.max_states:
            self.limit = self.limit or f"max_states={self.max_states} reached"
        else:
            return
        self.shared[_STOP] = 1

    def flush(self) -> list[list[Any]]:
        """The races with frames the coordinator owns, as places there."""
        search = self.search
        adds = []
        for j, initials in search.outbox:
            events = search.enabled_at[j]
            assert events is not None
            order = {n: i for i, n in enumerate(events)}
            places = [order[q] for q in initials if q in order]
            if places:
                adds.append([self.ids[j], places])
        search.outbox = []
        return adds

    def hand_over(self) -> None:
        """Give the coordinator the frames down to the first with pending steps."""
        search = self.search
        top = len(search.walks) - 1
        last = next(
            (
                k
                for k in range(search.base, top)
                if search.enabled_at[k] is not None and search.pending(k)
            ),
            None,
        )
        adds = self.flush()
        if last is None:
            if adds:
                self.send({"add": adds})
            return
        frames = []
        for k in range(search.base, last + 1):
            events = search.enabled_at[k]
            assert events is not None
            order = {n: i for i, n in enumerate(events)}
            node = 1 + self.me + self.workers * next(self.serial)
            begun = [order[n] for n in search.begun[k]]
            inherited = [order[n] for n in search.sleep[k] if n in order and order[n] not in begun]
            backtrack = [order[n] for n in search.backtrack[k] if n in order]
            parent, step = (self.ids[k - 1], search.indices[k - 1]) if k else (None, None)
            frames.append([node, parent, step, inherited, begun, backtrack])
            self.ids.append(node)
        search.base = last + 1
        self.shared[_HUNGRY] = 0
        self.send({"add": adds, "release": frames})

    def result(self) -> dict[str, Any]:
        search = self.search
        return {
            "outcomes": list(self.outcomes.values()),
            "executions": self.executions,
            "states": list(search.states),
            "deliveries": search.deliveries,
            "dead_letters": search.dead_letters,
            "limit": self.limit,
        }


def _child(
    search: dpor.Search,
    me: int,
    workers: int,
    shared: mmap.mmap,
    bounds: tuple[int, int],
    tasks: int,
    out: int,
) -> None:
    code = 0
    # Searches allocate millions of acyclic objects: the cyclic collector
    # would rescan them all (see `_explore.without_cyclic_gc`).
    gc.disable()

    def emit(message: dict[str, Any]) -> None:
        view = memoryview(orjson.dumps(message) + b"\n")
        while view:
            view = view[os.write(out, view) :]

    worker = _Worker(search, me, workers, shared, bounds, emit)
    try:
        with os.fdopen(tasks, "rb") as reader:
            worker.serve(reader)
    except BaseException:
        code = 1
        with contextlib.suppress(BaseException):
            worker.send({"crashed": traceback.format_exc()})
    finally:
        os._exit(code)


# -- the coordinator -----------------------------------------------------------


class _Pool:
    """The forked workers (1 to `workers - 1`: worker 0 is the calling
    process) and the pipes to them."""

    def __init__(
        self, workers: int, search: Callable[[], dpor.Search], bounds: tuple[int, int]
    ) -> None:
        self.shared = mmap.mmap(-1, _COUNTERS + 16 * workers)
        self.bounds = bounds
        self.pids: list[int] = []
        self.tasks: list[int] = []  # write ends, one per forked worker
        self.results: list[int] = []  # read ends
        pipes = [(os.pipe(), os.pipe()) for _ in range(workers - 1)]
        gc.freeze()  # keep the parent's objects out of the children's collections
        try:
            for me, ((task_r, _), (_, out_w)) in enumerate(pipes, 1):
                pid = os.fork()
                if pid == 0:  # the child keeps only its own two ends open
                    for fd in itertools.chain.from_iterable((*a, *b) for a, b in pipes):
                        if fd not in (task_r, out_w):
                            os.close(fd)
                    _child(search(), me, workers, self.shared, bounds, task_r, out_w)
                self.pids.append(pid)
        finally:
            gc.unfreeze()
        for (task_r, task_w), (out_r, out_w) in pipes:
            os.close(task_r)
            os.close(out_w)
            self.tasks.append(task_w)
            self.results.append(out_r)

    def send(self, worker: int, message: dict[str, Any]) -> None:
        """Send to forked worker `worker` (1 to `workers - 1`)."""
        data = memoryview(orjson.dumps(message) + b"\n")
        while data:
            data = data[os.write(self.tasks[worker - 1], data) :]

    def close(self) -> None:
        for fd in (*self.tasks, *self.results):
            with contextlib.suppress(OSError):
                os.close(fd)
        for pid in self.pids:  # our own children: a worker still running (the
            # coordinator was interrupted) is killed, by its pid
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
        self.shared.close()


class _Replayed(NamedTuple):
    """An execution a worker found, replayed by the coordinator."""

    key: Hashable
    outcome: Outcome
    trace: Trace


class Run:
    """What the coordinator learns from the workers, and the executions it
    replayed meanwhile (each worker's in the order found: shared prefixes)."""

    tasks = 0
    """Subtrees sent to workers (the first is the whole search)."""
    handed_over = 0
    """Frames workers handed over to the coordinator."""

    def __init__(self, root: World, ctx: Context, workers: int) -> None:
        self.root = root
        self.ctx = ctx
        self.replayers = [dpor.Replayer(root, ctx) for _ in range(workers)]
        self.backlog: deque[tuple[int, dpor.Places]] = deque()
        self.replayed: dict[dpor.Places, _Replayed] = {}
        self.results: list[dict[str, Any]] = []
        self.failed = False
        self.fallback: str | None = None
        self.crashed: str | None = None

    def replay(self, most: int) -> None:
        """Replay up to `most` executions of the backlog."""
        for _ in range(min(most, len(self.backlog))):
            me, places = self.backlog.popleft()
            if places not in self.replayed:
                self.replayed[places] = self._replayed(*self.replayers[me](places))

    def replay_one(self, places: dpor.Places) -> _Replayed:
        replayed = self._replayed(*dpor.Replayer(self.root, self.ctx)(places))
        self.replayed[places] = replayed
        return replayed

    def _replayed(self, world: World, steps: tuple[Step, ...]) -> _Replayed:
        return _Replayed(world.outcome_key(), world.outcome(self.ctx.addresses), Trace(steps))


class _Coordination:
    """The calling process: it owns the frames handed over, sends tasks,
    replays what the workers find, and searches too (worker 0, in
    process), so n processes use n cores. Between its own executions it
    serves the forked workers; it replays before it searches, so the
    executions to replay never pile up at the end."""

    def __init__(self, pool: _Pool, run: Run, local: Callable[[], dpor.Search]) -> None:
        self.pool = pool
        self.run = run
        self.workers = len(pool.pids) + 1
        self.coordinator = _Coordinator()
        self.selector = selectors.DefaultSelector()
        self.buffers = {fd: b"" for fd in pool.results}
        self.who = {fd: me for me, fd in enumerate(pool.results, 1)}
        for fd in pool.results:
            self.selector.register(fd, selectors.EVENT_READ)
        self.idle = list(range(1, self.workers))
        self.busy: set[int] = set()
        self.reported: set[int] = set()
        self.finishing = False
        self.served = 0.0
        self.local = _Worker(
            local(), 0, self.workers, pool.shared, pool.bounds, lambda m: self.handle(0, m)
        )
        self.local.serving = self.serve

    def handle(self, me: int, message: dict[str, Any]) -> None:
        run, coordinator = self.run, self.coordinator
        run.backlog.extend((me, tuple(places)) for places in message.get("seen", ()))
        for node, initials in message.get("add", ()):
            coordinator.add(node, initials)
        if "release" in message:
            coordinator.take(message["release"])
            run.handed_over += len(message["release"])
        if "done" in message or "failed" in message or "fallback" in message:
            self.busy.discard(me)
            if me:
                self.idle.append(me)
        if "failed" in message:
            run.failed = True
        if "fallback" in message:
            run.fallback = message["fallback"]
        if "crashed" in message:
            run.crashed = message["crashed"]
        if "result" in message:
            run.results.append(message["result"])
            self.reported.add(me)

    def serve(self) -> None:
        """Between two of the calling process's own executions (at most every
        `_SERVE_EVERY` seconds: a look at the pipes is a system call)."""
        now = time.perf_counter()
        if now < self.served + _SERVE_EVERY:
            return
        self.served = now
        self.read(wait=False)
        self.dispatch(idle_here=False)
        if len(self.run.backlog) > _BACKLOG:
            self.run.replay(_REPLAY_BATCH)

    def read(self, wait: bool) -> None:
        """Handle what the forked workers sent (`wait`: until something comes)."""
        run = self.run
        for key, _ in self.selector.select(timeout=None if wait else 0):
            fd = int(key.fd)
            data = os.read(fd, 1 << 16)
            me = self.who[fd]
            if not data:  # a worker has left: with its result, or it died
                self.selector.unregister(fd)
                if me not in self.reported:
                    run.crashed = run.crashed or f"worker {me} died"
                    self.busy.discard(me)
                    self.reported.add(me)
                continue
            lines = (self.buffers[fd] + data).split(b"\n")
            self.buffers[fd] = lines.pop()
            for line in lines:
                self.handle(me, orjson.loads(line))

    def dispatch(self, idle_here: bool) -> None:
        """Send queued tasks to idle forked workers; raise the hungry flag if
        a worker (or, with `idle_here`, this process) has nothing to do."""
        pool, run, coordinator = self.pool, self.run, self.coordinator
        if run.failed or run.fallback is not None or run.crashed is not None:
            pool.shared[_STOP] = 1
        if pool.shared[_STOP]:  # the running tasks end at their next execution
            coordinator.queue.clear()
        while coordinator.queue and self.idle:
            me = self.idle.pop()
            self.busy.add(me)
            pool.send(me, {"task": coordinator.hops(*coordinator.queue.popleft())})
            run.tasks += 1
        wanting = self.idle or (idle_here and not run.backlog)
        pool.shared[_HUNGRY] = 1 if wanting and self.busy and not coordinator.queue else 0

    def loop(self) -> None:
        pool, run, coordinator = self.pool, self.run, self.coordinator
        self.busy.add(0)
        run.tasks = 1
        self.local.task([])  # the whole search, from the root, here
        while len(self.reported) < self.workers:
            self.read(wait=False)
            self.dispatch(idle_here=True)
            if coordinator.queue and not pool.shared[_STOP]:
                self.busy.add(0)
                run.tasks += 1
                hops = coordinator.hops(*coordinator.queue.popleft())
                self.local.task([dpor.Hop(*hop) for hop in hops])
            elif run.backlog:
                run.replay(_REPLAY_BATCH)
            elif not self.busy and not self.finishing:
                self.finishing = True
                self.reported.add(0)
                run.results.append(self.local.result())
                for me in range(1, self.workers):
                    if me not in self.reported:
                        pool.send(me, {"finish": True})
            else:
                self.read(wait=True)
        self.selector.close()
        run.replay(len(run.backlog))


def exhaust(
    root: World,
    ctx: Context,
    *,
    workers: int,
    max_depth: int,
    max_executions: int,
    max_states: int,
    on_error: str,
    sequential: Callable[[], SimulationReport],
) -> SimulationReport:
    """`exhaust` over `workers` processes (see the design note);
    `sequential` is the one-process search, run where this one gives way."""
    started = time.perf_counter()
    run = search(
        root,
        ctx,
        workers=workers,
        max_depth=max_depth,
        max_executions=max_executions,
        max_states=max_states,
        on_error=on_error,
    )
    if run.crashed is not None:
        warnings.warn(
            f"a worker of the parallel search failed; searching in one process:\n{run.crashed}",
            RuntimeWarning,
            stacklevel=3,
        )
    if run.failed or run.fallback is not None or run.crashed is not None:
        return sequential()  # it raises the failure, or falls back as one process does
    return _report(root, ctx, run, workers, started, max_executions)


def search(
    root: World,
    ctx: Context,
    *,
    workers: int,
    max_depth: int,
    max_executions: int,
    max_states: int,
    on_error: str,
) -> Run:
    """Run the search over `workers` processes (this one and `workers - 1`
    forked); what they found."""

    def one() -> dpor.Search:
        return dpor.Search(
            root,
            ctx,
            on_error=on_error,
            invariant=None,
            max_depth=max_depth,
            max_states=max_states,
        )

    pool = _Pool(workers, one, (max_executions, max_states))
    run = Run(root, ctx, workers)
    try:
        with without_cyclic_gc():
            _Coordination(pool, run, one).loop()
    finally:
        pool.close()
    return run


def _report(
    root: World,
    ctx: Context,
    run: Run,
    workers: int,
    started: float,
    max_executions: int,
) -> SimulationReport:
    # outcome key -> [least execution there, its outcome and trace, executions]
    merged: dict[Hashable, list[Any]] = {}
    for result in run.results:
        for plain, n in result["outcomes"]:
            places = tuple(plain)
            replayed = run.replayed.get(places) or run.replay_one(places)
            seen = merged.get(replayed.key)
            if seen is None:
                merged[replayed.key] = [places, replayed, n]
            else:
                seen[2] += n
                if dpor.shorter(places, seen[0]):
                    seen[0], seen[1] = places, replayed
    ordered = sorted(merged.values(), key=lambda m: (len(m[0]), m[0]))
    found = tuple(Found(r.outcome, r.trace, n) for _, r, n in ordered)
    executions = sum(int(r["executions"]) for r in run.results)
    limit = next((r["limit"] for r in run.results if r["limit"]), None)
    if limit is None and executions >= max_executions:
        limit = f"max_executions={max_executions} reached"
    states: set[int] = set()
    for r in run.results:
        states.update(r["states"])
    return SimulationReport(
        outcomes=found,
        executions=executions,
        states=len(states),
        deliveries=sum(int(r["deliveries"]) for r in run.results),
        dead_letters=sum(int(r["dead_letters"]) for r in run.results),
        complete=limit is None,
        limit=limit,
        faults=faults_of(root),
        seconds=time.perf_counter() - started,
        strategy=f"dpor, {workers} processes",
    )
