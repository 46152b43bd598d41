"""Liveness: `eventually=` properties, "something good happens in the end",
under weak fairness.

Design note
-----------
A property `p` (a function of the outcome: every activated entity's state
and events, true or false) must eventually hold on every execution:

* an execution that ends (a terminal world) must end in a world where `p`
  holds: checked on every outcome `exhaust` found; the violation reported
  is the one with the shortest trace;
* an execution that never ends must not stay forever in worlds where `p` is
  false ("hot" worlds, as Coyote's hot monitor states) *if it is fair*.
  Cycles only exist when the search met one (DPOR fell back on a cycle) or
  ran into `max_depth`; only then is the full graph of worlds built
  (deduplicated, every transition, no reduction: a cycle needs its real
  edges) and its strongly connected components of hot worlds found
  (Tarjan, iterative).

**Fairness** (weak fairness, as Coyote's and TLA+'s `WF`): a run that goes
round a cycle forever while some step stays possible all along, and is
never taken, is not something a real system does. Two kinds of steps are
owed:

* *deliveries, per channel* (sender -> target): if a channel has a message
  in flight in every world of the cycle, the cycle must deliver (or drop)
  one of its messages. Under FIFO that is its oldest message, so every
  message of a channel is delivered in the end; with the `reorder` fault
  the promise is per channel, not per message;
* *the clock*: if a timer is set in every world of the cycle, the clock
  must move in it. Activations take no virtual time, so a cycle of
  deliveries that never lets a due reminder fire would make time stand
  still (a Zeno run): in a real system the reminder fires.

A cycle that keeps these promises is *fair*; only a fair cycle of hot worlds
is a liveness bug. Fair cycles exist exactly in the hot components that
keep them: a component keeps a channel's promise if one of its worlds has
that channel empty or one of its own transitions delivers on it (and the
clock's if one of its worlds has no timer or one of its transitions moves
the clock): the cycle through every world and transition of such a
component is fair; a component that breaks a promise has that channel full
(or a timer set) in every world and no transition serving it, so every
cycle inside it breaks that promise too. Fault budgets only go down, so
drops and duplicates never lie on a cycle.

**What is reported.** The fair lasso reached soonest: a shortest path to a
world of a fair component (breadth first), then a short fair way round it
(from that world, the nearest transition or world that keeps a promise not
kept yet, repeatedly, then the shortest way back).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

from pachytype.simulation._errors import LivenessError
from pachytype.simulation._explore import Found, SimulationReport, replay
from pachytype.simulation._trace import Kind, Outcome, Trace
from pachytype.simulation._world import Channel, Context, Event, World, advance, enabled

Property = Callable[[Outcome], bool]
"""A liveness property: true in the worlds where the good thing has happened."""

Promise = Channel | None
"""What a fair cycle owes: a delivery on a channel, or (None) a move of the clock."""

_Edges = list[list[tuple[Event, int]]]


def check_terminal(
    report: SimulationReport, prop: Property, note: Callable[[Found], str] | None = None
) -> None:
    """Raise `LivenessError` for the shortest-traced outcome where `prop` is
    false (with `note(found)` added to it, e.g. how to replay it)."""
    bad = [f for f in report.outcomes if not prop(f.outcome)]
    if bad:
        worst = min(bad, key=lambda f: len(f.trace))
        error = LivenessError(prop, worst.outcome, worst.trace, Trace())
        if note is not None:
            error.add_note(note(worst))
        raise error


def may_cycle(report: SimulationReport) -> bool:
    """Whether the search met a cycle or did not see every execution end."""
    return "cycle" in report.strategy or (report.limit or "").startswith("max_depth")


def check_cycles(root: World, ctx: Context, prop: Property, max_states: int) -> bool:
    """Raise `LivenessError` with a shortest fair lasso through worlds where
    `prop` is false; return whether the whole graph was searched (`max_states`)."""
    # Breadth first over distinct worlds: parents give shortest stems.
    index: dict[Hashable, int] = {root.key(): 0}
    worlds = [root]
    parents: list[tuple[int, Event] | None] = [None]
    edges: _Edges = []
    queue = deque([0])
    complete = True
    while queue:
        node = queue.popleft()
        out: list[tuple[Event, int]] = []
        edges.extend([] for _ in range(node + 1 - len(edges)))
        for event in enabled(worlds[node]):
            world, _ = advance(worlds[node], event, ctx)
            key = world.key()
            child = index.get(key)
            if child is None:
                if len(worlds) >= max_states:
                    complete = False
                    continue
                child = index[key] = len(worlds)
                worlds.append(world)
                parents.append((node, event))
                queue.append(child)
            out.append((event, child))
        edges[node] = out
    edges.extend([] for _ in range(len(worlds) - len(edges)))
    hot = [not prop(w.outcome(ctx.addresses)) for w in worlds]
    fair = [c for c in _hot_components(edges, hot) if not _broken(worlds, edges, c)]
    if not fair:
        return complete
    entry = min((n for c in fair for n in c), key=lambda n: (_depth(parents, n), n))
    component = next(c for c in fair if entry in c)
    stem = _path(parents, entry)
    cycle = _fair_loop(worlds, edges, component, entry)
    trace = Trace(tuple(replay(root, stem, ctx)))
    around = Trace(tuple(replay(worlds[entry], cycle, ctx)))
    raise LivenessError(prop, worlds[entry].outcome(ctx.addresses), trace, around)


def _depth(parents: list[tuple[int, Event] | None], node: int) -> int:
    depth = 0
    parent = parents[node]
    while parent is not None:
        depth += 1
        parent = parents[parent[0]]
    return depth


def _path(parents: list[tuple[int, Event] | None], node: int) -> list[Event]:
    events: list[Event] = []
    parent = parents[node]
    while parent is not None:
        events.append(parent[1])
        parent = parents[parent[0]]
    events.reverse()
    return events


def _hot_components(edges: list[list[tuple[Event, int]]], hot: list[bool]) -> list[set[int]]:
    """Strongly connected components of the hot subgraph that contain a cycle
    (Tarjan's algorithm, iterative: graphs can be deep)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    found: list[set[int]] = []
    counter = 0
    for start in range(len(edges)):
        if not hot[start] or start in index:
            continue
        work: list[tuple[int, int]] = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            succ = [c for _, c in edges[node] if hot[c]]
            while i < len(succ):
                child = succ[i]
                i += 1
                if child not in index:
                    work.append((node, i))
                    work.append((child, 0))
                    recurse = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if recurse:
                continue
            if low[node] == index[node]:
                component: set[int] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                looping = len(component) > 1 or any(c == node for _, c in edges[node])
                if looping:
                    found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


# -- fairness -------------------------------------------------------------------


def _owed(worlds: list[World], component: set[int]) -> set[Promise]:
    """What a cycle in `component` may owe: a delivery on each channel with
    mail in one of its worlds, a clock move if one of them has a timer."""
    owed: set[Promise] = set()
    for node in component:
        world = worlds[node]
        owed.update(world.channels)
        if world.timers:
            owed.add(None)
    return owed


def _kept_by_world(world: World, owed: set[Promise]) -> set[Promise]:
    """The promises a cycle keeps by passing through `world`: a channel empty
    there was not full all along; no timer there, the clock owed nothing."""
    return {p for p in owed if (not world.timers if p is None else p not in world.channels)}


def _kept_by_step(event: Event) -> set[Promise]:
    """The promise a step keeps: a delivery (or drop) on its channel, a tick."""
    if event.kind is Kind.DUPLICATE:
        return set()  # the message stays in flight
    return {event.channel}  # None for a tick: the clock moved


def _broken(worlds: list[World], edges: _Edges, component: set[int]) -> bool:
    """Whether every cycle in `component` breaks a promise (see the design note)."""
    owed = _owed(worlds, component)
    for node in component:
        owed -= _kept_by_world(worlds[node], owed)
        for event, child in edges[node]:
            if child in component:
                owed -= _kept_by_step(event)
        if not owed:
            return False
    return bool(owed)


def _fair_loop(worlds: list[World], edges: _Edges, component: set[int], entry: int) -> list[Event]:
    """A fair way from `entry` back to itself inside `component` (which keeps
    every promise): to the nearest world or step keeping a promise still
    owed, again until none is, then the shortest way back."""
    owed = _owed(worlds, component) - _kept_by_world(worlds[entry], _owed(worlds, component))
    steps: list[tuple[Event, int]] = []
    node = entry
    while owed:
        path = _nearest(worlds, edges, component, node, owed)
        for event, child in path:
            owed -= _kept_by_step(event)
            owed -= _kept_by_world(worlds[child], owed)
        steps.extend(path)
        node = path[-1][1]
    if node != entry or not steps:
        steps.extend(_shortest(edges, component, node, lambda n, e: n == entry))
    return [event for event, _ in steps]


def _nearest(
    worlds: list[World], edges: _Edges, component: set[int], start: int, owed: set[Promise]
) -> list[tuple[Event, int]]:
    """A shortest path in `component` from `start` ending with a step, or at a
    world, that keeps one of the `owed` promises."""

    def keeps(node: int, event: Event) -> bool:
        return bool(_kept_by_step(event) & owed or _kept_by_world(worlds[node], owed))

    return _shortest(edges, component, start, keeps)


def _shortest(
    edges: _Edges, component: set[int], start: int, goal: Callable[[int, Event], bool]
) -> list[tuple[Event, int]]:
    """A shortest non-empty path inside `component` from `start` whose last
    step (event, world reached) satisfies `goal` (breadth first)."""
    back: dict[int, tuple[int, Event]] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for event, child in edges[node]:
            if child not in component:
                continue
            if goal(child, event):
                path = [(event, child)]
                while node != start:
                    parent, step = back[node]
                    path.append((step, node))
                    node = parent
                path.reverse()
                return path
            if child not in seen:
                seen.add(child)
                back[child] = (node, event)
                queue.append(child)
    raise AssertionError("a fair component keeps every promise on some cycle")
