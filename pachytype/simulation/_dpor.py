"""Source-set dynamic partial-order reduction (Abdulla, Aronis, Jonsson and
Sagonas, POPL 2014): explore one execution per class of equivalent delivery
orders, depth first, keeping only the current path in memory.

Design note
-----------
* **Events are named by the message, not by its place.** A step is named
  `(kind, channel, n, copies)`: deliver (or drop, or duplicate) the `n`-th
  message that entered `channel`, after `copies` duplications of it. The
  name is the same in every order of independent steps (only the sender's
  own steps put messages on a channel), so a race found in one execution
  can be replayed in another. `_Walk` keeps these names beside a `World`.
* **Dependence** is `_world.independent`, widened by `visible`: steps at two
  entities an invariant reads are dependent, so every combination of their
  states an invariant could see is reached (the visibility condition of
  partial-order reduction). **Happens-before** is dependence plus "this
  step put that message in flight", closed transitively; each step on the
  path keeps its causal past as a bitmask.
* **Choices.** Delivering, dropping or duplicating one message are
  alternatives that exclude each other (not a race between steps of one
  execution): when one is taken at a point, the others are explored there.
* **Races.** When step `p` is added after path `E`, every step `e` of `E`
  that is dependent with `p`, is not a cause of it (`p` could have gone
  first) and is not ordered before it through another step, is in a race
  with it. The algorithm then makes sure, at the point before `e`, that
  some step that can start "the rest without `e`, then `p`" (an *initial*)
  is in the backtrack set there. Sleep sets prune the remaining repeats.
  Independent entities never race, so N independent ping-pong pairs give
  one execution and a path of N * L steps: linear, not (L+1)^N.
* **Outcomes and shortest traces.** Equivalent executions have the same
  length and the same final states, so the shortest explored execution to
  an outcome is a shortest one overall. A failure (an activation error or
  a broken invariant) is reported with its *causal past* only (the steps it
  depends on), and the search goes on to keep the shortest such trace: the
  same shortest traces the breadth-first search gave.
* **Sharing the search** (`_parallel_dpor`). A search can start from a
  path someone else owns (`Search.start` with `Hop`s) and give frames
  away (`base`): it never returns to frames below `base`, and a race with
  one of their steps goes to `outbox` for their owner to apply. Executions
  are also named by places (`Search.indices`: each step's place among the
  steps enabled there), the same in every process; the least by (length,
  places) is an outcome's shortest trace, whichever order found it.
* **Where it does not apply.** Stateless search loops forever on a cycle of
  worlds, and an invariant that reads every entity makes every step
  visible (no reduction left). With `Faults(late=True)` a step (a keyed
  timer's cancel) can disable the clock tick, a step this search never
  sees race. In these cases `Fallback` is raised and the caller runs the
  stateful sleep-set search (`_explore`), which handles them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from pachytype._address import Address, Key
from pachytype.simulation._errors import InvariantError, SimulationError
from pachytype.simulation._explore import Found
from pachytype.simulation._trace import Kind, Outcome, Step, Trace
from pachytype.simulation._world import Channel, Context, Event, World, advance, apply, enabled

V = TypeVar("V")

Name = tuple[Kind, Channel | None, int, int]
"""A step by its message: (kind, channel, n-th message on it, copies made)."""

_TICK: Name = (Kind.TICK, None, 0, 0)

_KINDS = (Kind.DELIVER, Kind.DROP, Kind.DUPLICATE)

_Ids = Mapping[Channel, tuple[tuple[int, int], ...]]
"""Per channel, the (n, copies) of each message in flight, aligned with the world's."""


class Hop(NamedTuple):
    """A frame of a path that belongs to another search (`Search.start`),
    with the steps there as places among the steps enabled there."""

    node: int
    """Its owner's name for it."""
    begun: list[int]
    """The steps started there before `step` (they sleep in `step`'s subtree)."""
    backtrack: list[int]
    """Its backtrack set as its owner last sent it (races it covers are not sent)."""
    step: int
    """The step the path takes there."""


class Fallback(Exception):
    """DPOR cannot search this space soundly (the reason says why)."""


class _Everything(BaseException):
    """An invariant looked at every entity (iterated the states). Not an
    `Exception`: an invariant's own `except Exception` must not swallow it."""


class _Walk:
    """A world, with the names of the messages in flight (see the design note)."""

    __slots__ = ("entered", "ids", "world")

    def __init__(self, world: World, ids: _Ids, entered: Mapping[Channel, int]) -> None:
        self.world = world
        self.ids = ids
        self.entered = entered

    @classmethod
    def start(cls, world: World) -> _Walk:
        ids = {c: tuple((k, 0) for k in range(len(m))) for c, m in world.channels.items()}
        return cls(world, ids, {c: len(m) for c, m in world.channels.items()})

    def events(self) -> dict[Name, Event]:
        """The enabled steps, by name, in `enabled`'s order."""
        named: dict[Name, Event] = {}
        for event in enabled(self.world):
            if event.channel is None:
                named[_TICK] = event
            else:
                n, copies = self.ids[event.channel][event.position]
                named[(event.kind, event.channel, n, copies)] = event
        return named

    def after(self, event: Event, world: World) -> tuple[_Walk, frozenset[tuple[Channel, int]]]:
        """The walk at `world` (reached by `event`), and the messages it put in flight."""
        ids = dict(self.ids)
        entered = dict(self.entered)
        channel = event.channel
        if channel is not None:
            queue = ids[channel]
            i = event.position
            if event.kind is Kind.DUPLICATE:
                n, copies = queue[i]
                ids[channel] = (*queue[:i], (n, copies + 1), *queue[i + 1 :])
            elif len(queue) > 1:
                ids[channel] = queue[:i] + queue[i + 1 :]
            else:
                del ids[channel]
        posted: list[tuple[Channel, int]] = []
        for c, messages in world.channels.items():
            have = ids.get(c, ())
            extra = len(messages) - len(have)
            if extra > 0:
                start = entered.get(c, 0)
                ids[c] = have + tuple((start + k, 0) for k in range(extra))
                entered[c] = start + extra
                posted.extend((c, start + k) for k in range(extra))
        return _Walk(world, ids, entered), frozenset(posted)


def replay(root: World, names: list[Name], ctx: Context) -> Trace:
    """The trace of the steps `names` from `root` (steps are pure: same result)."""
    walk = _Walk.start(root)
    steps: list[Step] = []
    for name in names:
        event = walk.events()[name]
        world, step = apply(walk.world, event, ctx)
        steps.append(step)
        walk = walk.after(event, world)[0]
    return Trace(tuple(steps))


class _Recording(Mapping[Address[Any], V]):
    """The states (or events) an invariant sees, recording which entities it looked at."""

    def __init__(self, states: Mapping[Address[Any], V], seen: set[Key]) -> None:
        self._states = states
        self._seen = seen

    def __getitem__(self, address: Address[Any]) -> V:
        self._seen.add(address.key)
        return self._states[address]

    def __contains__(self, address: object) -> bool:
        if isinstance(address, Address):
            self._seen.add(address.key)
        return address in self._states

    def __iter__(self) -> Iterator[Address[Any]]:
        raise _Everything

    def __len__(self) -> int:
        raise _Everything


Invariant = Callable[[Outcome], object]


class Search:
    """One DPOR search from `root` (plain data; `executions()` runs it).

    The path is a stack of frames: frame k is a world, the steps enabled
    there, its backtrack set, its sleep set (what is asleep or was started
    there) and the steps started there in order; step k leads from frame k
    to frame k + 1. Frames below `base` belong to someone else (a parallel
    search's coordinator, `_parallel_dpor`): the search never returns to them, and
    a race found with one of their steps goes to `outbox` instead of their
    backtrack set. A sequential search has `base == 0`."""

    def __init__(
        self,
        root: World,
        ctx: Context,
        *,
        on_error: str,
        invariant: Invariant | None,
        max_depth: int,
        max_states: int,
    ) -> None:
        self.root = root
        self.ctx = ctx
        self.on_error = on_error
        self.invariant = invariant
        self.max_depth = max_depth
        self.max_states = max_states
        self.reorder = root.reorder
        self.visible: set[Key] = set()
        self.states: set[int] = set()
        self.deliveries = 0
        self.dead_letters = 0
        self.limit: str | None = None
        self.stopped = False
        # The shortest failure so far: its steps by name, and what was raised.
        self.failure: tuple[list[Name], BaseException] | None = None
        self.started = time.perf_counter()
        # The path (see the class docstring).
        self.walks: list[_Walk] = []
        self.backtrack: list[dict[Name, None]] = []
        self.sleep: list[set[Name]] = []
        self.begun: list[list[Name]] = []  # steps started at each frame, in order
        self.enabled_at: list[dict[Name, Event] | None] = []
        self.names: list[Name] = []
        self.taken: list[Event] = []  # the same steps as events (cheaper to replay)
        self.indices: list[int] = []  # step k's place among the steps enabled at frame k
        self.masks: list[int] = []  # causal past of step k (bits of earlier steps)
        self.posts: list[frozenset[tuple[Channel, int]]] = []  # messages step k put in flight
        self.on_path: dict[Hashable, int] = {}
        self.base = 0
        self.outbox: list[tuple[int, list[Name]]] = []
        """Races with steps of frames below `base`: (frame, the initials to add one of)."""
        self._sent: set[tuple[int, tuple[Name, ...]]] = set()

    # -- dependence ----------------------------------------------------------

    def dependent(self, a: Name, b: Name) -> bool:
        if a[1] is None or b[1] is None:
            return True  # the clock: only enabled when nothing else is
        ta, tb = a[1][1], b[1][1]
        if ta == tb:
            return True
        if a[0] is not Kind.DELIVER and b[0] is not Kind.DELIVER:
            return True  # faults share a budget: one may use up the other's
        return ta in self.visible and tb in self.visible

    def reversible(self, e: Name, p: Name) -> bool:
        """Whether `p` could go before the earlier step `e` (its race partner)."""
        if e[1] != p[1] or p[1] is None:
            return True
        if e[2] == p[2]:
            return False  # a copy of the same message: the duplicate comes first
        return self.reorder  # FIFO: the channel's earlier message goes first

    # -- invariant -----------------------------------------------------------

    def check(self, world: World, names: list[Name], masks: list[int]) -> None:
        """Run the invariant on `world`; keep the shortest failure found."""
        assert self.invariant is not None
        seen: set[Key] = set()
        outcome = world.outcome(self.ctx.addresses)
        try:
            self.invariant(
                Outcome(_Recording(outcome.states, seen), _Recording(outcome.events, seen))
            )
        except _Everything:
            raise Fallback("the invariant looks at every entity") from None
        except Exception as error:
            self._widen(seen)
            past = 0
            for k, name in enumerate(names):
                if name[1] is not None and name[1][1] in seen:
                    past |= (1 << k) | masks[k]
            steps = [n for k, n in enumerate(names) if past >> k & 1]
            self._keep(steps, error)
        else:
            self._widen(seen)

    def _widen(self, seen: set[Key]) -> None:
        if not seen <= self.visible:
            if self.deliveries:  # part of the search ran with fewer steps visible
                self.visible |= seen
                raise _Restart
            self.visible |= seen

    def _keep(self, names: list[Name], error: BaseException) -> None:
        if self.failure is None or len(names) < len(self.failure[0]):
            self.failure = (names, error)

    def raise_failure(self) -> None:
        """Raise the shortest failure found, with its trace."""
        if self.failure is None:
            return
        names, error = self.failure
        trace = replay(self.root, names, self.ctx)
        if isinstance(error, _ActivationFailed):
            step = trace[-1]
            assert step.to is not None and step.error is not None
            raised = SimulationError(step.to, step.before, step.message, step.error, trace)
            raise raised from step.error
        assert self.invariant is not None
        outcome = _final_outcome(self.root, names, self.ctx)
        raise InvariantError(self.invariant, error, outcome, trace) from error

    # -- the path ------------------------------------------------------------

    def _push(self, walk: _Walk, sleep: set[Name]) -> None:
        self.walks.append(walk)
        self.backtrack.append({})
        self.sleep.append(sleep)
        self.begun.append([])
        self.enabled_at.append(None)
        key = walk.world.key()
        if key in self.on_path:
            raise Fallback("a cycle of worlds (the system can run forever)")
        self.on_path[key] = self.on_path.get(key, 0) + 1

    def _pop(self) -> None:
        walk = self.walks.pop()
        key = walk.world.key()
        if self.on_path[key] == 1:
            del self.on_path[key]
        else:
            self.on_path[key] -= 1
        self.backtrack.pop()
        self.sleep.pop()
        self.begun.pop()
        self.enabled_at.pop()
        if self.names:
            self.names.pop()
            self.taken.pop()
            self.indices.pop()
            self.masks.pop()
            self.posts.pop()

    def _reset(self) -> None:
        while self.walks:
            self._pop()
        self.outbox = []
        self._sent = set()
        self.base = 0
        self._push(_Walk.start(self.root), set())

    def _take(self, p: Name, fresh: bool) -> None:
        """Take step `p` from the top frame (`fresh`: not a replay of a step
        someone else took: count it, look for its races, check what it did)."""
        k = len(self.walks) - 1
        walk = self.walks[k]
        events = self.enabled_at[k]
        assert events is not None
        here = self.sleep[k]
        if fresh and p[1] is not None:
            # Delivering, dropping and duplicating a message exclude one
            # another: a choice, not a race. Each one taken is explored.
            for kind in _KINDS:
                other = (kind, p[1], p[2], p[3])
                if other in events and other not in self.backtrack[k]:
                    self._add(k, [other])
        mask = self._races(p, fresh)
        child_sleep = {q for q in here if not self.dependent(q, p)}
        here.add(p)
        self.begun[k].append(p)
        event = events[p]
        world, error = advance(walk.world, event, self.ctx)
        if fresh:
            self.deliveries += 1
            if error is not None:
                self.dead_letters += 1
                if self.on_error == "raise":
                    steps = [n for j, n in enumerate(self.names) if mask >> j & 1]
                    self._keep([*steps, p], _ActivationFailed(error))
        child, posted = walk.after(event, world)
        hashed = hash(world.key())
        if hashed not in self.states:
            self.states.add(hashed)
            if len(self.states) >= self.max_states:
                self.limit = f"max_states={self.max_states} reached"
                self.stopped = True
        self.names.append(p)
        self.taken.append(event)
        self.indices.append(list(events).index(p))
        self.masks.append(mask)
        self.posts.append(posted)
        self._push(child, child_sleep)
        if fresh and self.invariant is not None and (p[1] is None or p[1][1] in self.visible):
            self.check(world, self.names, self.masks)

    def _add(self, j: int, initials: list[Name]) -> None:
        """Make sure one of `initials` is explored from frame `j`."""
        if j < self.base:
            sent = (j, tuple(initials))
            if sent not in self._sent:
                self._sent.add(sent)
                self.outbox.append((j, initials))
            return
        there = self.enabled_at[j]
        assert there is not None
        candidates = [q for q in initials if q in there]
        if candidates:
            awake = [q for q in candidates if q not in self.sleep[j]]
            self.backtrack[j][(awake or candidates)[0]] = None

    # -- the search ----------------------------------------------------------

    def executions(self) -> Iterator[tuple[World, list[Event]]]:
        """Every explored maximal execution: its final world and its steps
        (replay them with `_explore.replay`; `indices` has them as places
        among the enabled steps while the search is paused there).

        Raises `Fallback` (use the stateful search) or `_Restart` (run again:
        the invariant turned out to look at more entities)."""
        self.start()
        return self.run()

    def start(self, hops: Sequence[Hop] = ()) -> None:
        """Set the path to the root, then follow `hops` (frames that belong to
        someone else, see `Hop`); the last hop's step is taken fresh."""
        if self.root.late:
            raise Fallback("late messages: a cancel may disable a timer before it falls due")
        self._reset()
        self.states.add(hash(self.root.key()))
        if self.invariant is not None and not hops:
            self.check(self.root, self.names, self.masks)
        for n, hop in enumerate(hops):
            events = self.enabled_at[-1] = self.walks[-1].events()
            order = list(events)
            self.sleep[-1].update(order[i] for i in hop.begun)
            self.begun[-1].extend(order[i] for i in hop.begun)
            self.backtrack[-1].update(dict.fromkeys(order[i] for i in hop.backtrack))
            self.base = n + 1
            self._take(order[hop.step], fresh=n == len(hops) - 1)

    def run(self) -> Iterator[tuple[World, list[Event]]]:
        """Search on from the path `start` set (see `executions`)."""
        walks, backtrack, sleep = self.walks, self.backtrack, self.sleep
        while len(walks) > self.base:
            if self.stopped:
                return
            walk = walks[-1]
            events = self.enabled_at[-1]
            if events is None:
                events = self.enabled_at[-1] = walk.events()
                if not events:
                    yield walk.world, list(self.taken)
                    self._pop()
                    continue
                if len(self.names) >= self.max_depth:
                    self.limit = f"max_depth={self.max_depth} reached"
                    self._pop()
                    continue
                awake = [n for n in events if n not in sleep[-1]]
                if not awake:
                    self._pop()  # every way on is covered by a sibling explored before
                    continue
                backtrack[-1][awake[0]] = None
            here = sleep[-1]
            p = next((n for n in backtrack[-1] if n not in here and n in events), None)
            if p is None:
                self._pop()
                continue
            self._take(p, fresh=True)

    def pending(self, k: int) -> list[Name]:
        """The steps still to be started at frame `k` (one whose steps are known)."""
        events = self.enabled_at[k]
        assert events is not None
        here = self.sleep[k]
        return [n for n in self.backtrack[k] if n not in here and n in events]

    def path_worlds(self) -> list[World]:
        """While `executions()` is paused at an execution it yielded: the
        worlds along that execution, the root first."""
        return [walk.world for walk in self.walks]

    def _races(self, p: Name, fresh: bool) -> int:
        """The causal past of `p` after the path; if `fresh`, adds backtrack
        points for its races."""
        names, masks, posts = self.names, self.masks, self.posts
        n = len(names)
        past = 0
        races: list[int] = []
        message = None if p[1] is None else (p[1], p[2])
        for j in range(n - 1, -1, -1):
            if past >> j & 1:
                continue
            cause = message is not None and message in posts[j]
            e = names[j]
            if cause or self.dependent(e, p):
                past |= (1 << j) | masks[j]
                if not cause and p[1] is not None and e[1] is not None and self.reversible(e, p):
                    races.append(j)
        if not fresh:
            return past
        for j in races:
            rest = [k for k in range(j + 1, n) if not masks[k] >> j & 1]
            later = 0
            for k in rest:
                later |= 1 << k
            initials = [names[k] for k in rest if not masks[k] & later]
            if not past & later:
                initials.append(p)
            if any(q in self.backtrack[j] for q in initials):
                continue
            self._add(j, initials)
        return past


class _Restart(Exception):
    """The invariant looked at more entities: search again with them visible."""


class _ActivationFailed(Exception):
    """An activation raised (kept as the failure until the search ends)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _final_outcome(root: World, names: list[Name], ctx: Context) -> Outcome:
    walk = _Walk.start(root)
    for name in names:
        event = walk.events()[name]
        world, _ = advance(walk.world, event, ctx)
        walk = walk.after(event, world)[0]
    return walk.world.outcome(ctx.addresses)


Restart = _Restart


Places = tuple[int, ...]
"""An execution as the place of each step among the steps enabled where it
is taken (`Search.indices`): the same in every process, and ordered."""


class Replayer:
    """Replays executions given as places from `root`, each from where it
    leaves the previous one (executions met one after another in a search
    share long prefixes): the final world and the trace steps."""

    def __init__(self, root: World, ctx: Context) -> None:
        self.ctx = ctx
        self.worlds = [root]
        self.steps: list[Step] = []
        self.previous: Places = ()

    def __call__(self, path: Places) -> tuple[World, tuple[Step, ...]]:
        common = 0
        for a, b in zip(self.previous, path, strict=False):
            if a != b:
                break
            common += 1
        worlds, steps = self.worlds, self.steps
        del worlds[common + 1 :]
        del steps[common:]
        for place in path[common:]:
            world, step = apply(worlds[-1], enabled(worlds[-1])[place], self.ctx)
            worlds.append(world)
            steps.append(step)
        self.previous = path
        return worlds[-1], tuple(steps)


def replay_paths(
    root: World, paths: Sequence[Places], ctx: Context
) -> list[tuple[World, tuple[Step, ...]]]:
    """The final world and the trace steps of each of `paths` from `root`, in
    the order given (replayed in sorted order, sharing prefixes)."""
    replay = Replayer(root, ctx)
    result: list[tuple[World, tuple[Step, ...]]] = [(root, ())] * len(paths)
    for i in sorted(range(len(paths)), key=paths.__getitem__):
        result[i] = replay(paths[i])
    return result


def shorter(a: Places, b: Places) -> bool:
    """Whether `a` comes before `b`: shorter, or as long and less place by place.
    The shortest trace of an outcome is the least one: the same whoever found it."""
    return (len(a), a) < (len(b), b)


def found(
    root: World,
    ctx: Context,
    outcomes: Iterable[tuple[World, Places, int]],
    replayed: Mapping[Places, tuple[World, tuple[Step, ...]]] | None = None,
) -> tuple[Found, ...]:
    """The report's outcomes from (final world, least execution there,
    executions): ordered by their least execution, each with its trace
    (from `replayed` if there, else replayed now)."""
    ordered = sorted(outcomes, key=lambda o: (len(o[1]), o[1]))
    replayed = replayed or {}
    missing = [places for _, places, _ in ordered if places not in replayed]
    more = dict(zip(missing, replay_paths(root, missing, ctx), strict=True))
    return tuple(
        Found(world.outcome(ctx.addresses), Trace((replayed.get(places) or more[places])[1]), n)
        for world, places, n in ordered
    )
