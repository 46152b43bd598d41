"""Liveness: `eventually=` properties, "something good happens in the end".

Design note
-----------
A property `p` (a function of the outcome: every activated entity's state,
true or false) must eventually hold on every execution:

* an execution that ends (a terminal world) must end in a world where `p`
  holds: checked on every outcome `exhaust` found; the violation reported
  is the one with the shortest trace;
* an execution that never ends must not stay forever in worlds where `p` is
  false ("hot" worlds, as Coyote's hot monitor states): a cycle of hot
  worlds is a lasso the system can run around forever. Cycles only exist
  when the search met one (DPOR fell back on a cycle) or ran into
  `max_depth`; only then is the full graph of worlds built (deduplicated,
  every transition, no reduction: a cycle needs its real edges), its
  strongly connected components of hot worlds found (Tarjan, iterative),
  and the lasso reaching one soonest reported: a shortest path to it
  (breadth first), then a shortest way round it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

from pachytype.simulation._errors import LivenessError
from pachytype.simulation._explore import SimulationReport, replay
from pachytype.simulation._trace import Outcome, Trace
from pachytype.simulation._world import Context, Event, World, advance, enabled

Property = Callable[[Outcome], bool]
"""A liveness property: true in the worlds where the good thing has happened."""


def check_terminal(report: SimulationReport, prop: Property) -> None:
    """Raise `LivenessError` for the shortest-traced outcome where `prop` is false."""
    bad = [f for f in report.outcomes if not prop(f.outcome)]
    if bad:
        worst = min(bad, key=lambda f: len(f.trace))
        raise LivenessError(prop, worst.outcome, worst.trace, Trace())


def may_cycle(report: SimulationReport) -> bool:
    """Whether the search met a cycle or did not see every execution end."""
    return "cycle" in report.strategy or (report.limit or "").startswith("max_depth")


def check_cycles(root: World, ctx: Context, prop: Property, max_states: int) -> bool:
    """Raise `LivenessError` with a shortest lasso through worlds where `prop`
    is false; return whether the whole graph was searched (`max_states`)."""
    # Breadth first over distinct worlds: parents give shortest stems.
    index: dict[Hashable, int] = {root.key(): 0}
    worlds = [root]
    parents: list[tuple[int, Event] | None] = [None]
    edges: list[list[tuple[Event, int]]] = []
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
    components = _hot_components(edges, hot)
    if not components:
        return complete
    entry = min((n for c in components for n in c), key=lambda n: (_depth(parents, n), n))
    component = next(c for c in components if entry in c)
    stem = _path(parents, entry)
    cycle = _loop(edges, component, entry)
    trace = Trace(tuple(replay(root, stem, ctx)))
    around = Trace(tuple(replay(worlds[entry], cycle, ctx)))
    outcome = worlds[entry].outcome(ctx.addresses)
    raise LivenessError(prop, outcome, trace, around)


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


def _loop(edges: list[list[tuple[Event, int]]], component: set[int], entry: int) -> list[Event]:
    """A shortest way from `entry` back to itself inside `component`."""
    back: dict[int, tuple[int, Event]] = {}
    queue = deque([entry])
    while queue:
        node = queue.popleft()
        for event, child in edges[node]:
            if child not in component:
                continue
            if child == entry:
                events = [event]
                while node != entry:
                    node, step = back[node]
                    events.append(step)
                events.reverse()
                return events
            if child not in back:
                back[child] = (node, event)
                queue.append(child)
    raise AssertionError("a strongly connected component has a cycle through each node")


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
