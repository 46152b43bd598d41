"""One execution: deliver until the system is quiet, choosing each next step
with a seeded random generator, a seeded PCT scheduler, or an explicit
schedule (hypothesis draws those), with virtual time that jumps to the next
timer when nothing else can happen."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from pachytype.simulation._errors import RunawayError, check
from pachytype.simulation._explore import Invariant, OnError, failure
from pachytype.simulation._trace import Kind, Step, Trace
from pachytype.simulation._world import Context, Event, World, apply, enabled

Chooser = Callable[[list[Event]], Event]
"""Picks the next event among the enabled ones (never called with none)."""


def seeded(rng: random.Random, fault_rate: float) -> Chooser:
    """Deliver a uniformly chosen message next; while a fault budget remains,
    turn that delivery into a drop or duplicate with probability `fault_rate`."""

    def choose(events: list[Event]) -> Event:
        deliveries = [e for e in events if e.kind is Kind.DELIVER or e.kind is Kind.TICK]
        event = deliveries[rng.randrange(len(deliveries))]
        if event.kind is Kind.DELIVER and rng.random() < fault_rate:
            faults = [
                e
                for e in events
                if e.kind is not Kind.DELIVER
                and (e.channel, e.position) == (event.channel, event.position)
            ]
            if faults:
                return faults[rng.randrange(len(faults))]
        return event

    return choose


def pct(rng: random.Random, depth: int, steps: int, fault_rate: float) -> Chooser:
    """PCT (probabilistic concurrency testing, Burckhardt et al. 2010): each
    channel (sender -> receiver) gets a random priority when it first
    carries a message; the highest-priority channel with a message goes
    next; at `depth - 1` steps drawn among the first `steps`, the channel
    that just went drops to the lowest priority. A bug that needs `depth`
    ordering constraints is found by one execution with probability at
    least 1 / (channels * steps^(depth-1)), far above uniform random choice
    for deep, narrow orders. Faults are placed as in `seeded`."""
    priorities: dict[object, float] = {}
    changes = set(rng.sample(range(1, max(steps, depth) + 1), max(depth - 1, 0)))
    lowest = 0.0
    taken = 0

    def choose(events: list[Event]) -> Event:
        nonlocal lowest, taken
        taken += 1
        best: Event | None = None
        best_priority = -math.inf
        for event in events:
            if event.kind is not Kind.DELIVER and event.kind is not Kind.TICK:
                continue
            priority = priorities.get(event.channel)
            if priority is None:
                priority = priorities[event.channel] = 1.0 + rng.random()
            if priority > best_priority:
                best, best_priority = event, priority
        assert best is not None
        if taken in changes and best.channel is not None:
            lowest -= 1.0
            priorities[best.channel] = lowest
        if best.kind is Kind.DELIVER and rng.random() < fault_rate:
            faults = [
                e
                for e in events
                if e.kind is not Kind.DELIVER
                and (e.channel, e.position) == (best.channel, best.position)
            ]
            if faults:
                return faults[rng.randrange(len(faults))]
        return best

    return choose


def scheduled(schedule: Sequence[int]) -> Chooser:
    """Step k takes enabled event number `schedule[k] % len(enabled)`, then the
    first enabled event once the schedule runs out (0 is always the plainest
    choice: the oldest channel's next message, delivered, no fault)."""
    position = 0

    def choose(events: list[Event]) -> Event:
        nonlocal position
        pick = schedule[position] if position < len(schedule) else 0
        position += 1
        return events[pick % len(events)]

    return choose


def run(
    world: World,
    ctx: Context,
    choose: Chooser,
    *,
    max_deliveries: int,
    until: float | None,
    on_error: OnError,
    invariant: Invariant | None = None,
) -> tuple[World, list[Step]]:
    """Step `world` until quiet (or until virtual time `until`); the steps taken.

    Raises `SimulationError` on an activation error when `on_error` is
    "raise", `InvariantError` when `invariant` raises after a step, and
    `RunawayError` after `max_deliveries` steps."""
    steps: list[Step] = []
    while True:
        events = enabled(world)
        if not events:
            break
        if events[0].kind is Kind.TICK and until is not None and world.timers[0][0] > until:
            break
        if len(steps) >= max_deliveries:
            raise RunawayError(max_deliveries, world.pending(), Trace(tuple(steps)))
        world, step = apply(world, choose(events), ctx)
        steps.append(step)
        if step.error is not None and on_error == "raise":
            raise failure(step, Trace(tuple(steps)))
        if invariant is not None:
            outcome = world.outcome(ctx.addresses)
            check(invariant, outcome, lambda: Trace(tuple(steps)))
    return world, steps
