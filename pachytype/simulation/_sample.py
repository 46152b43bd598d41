"""Sampling executions for state spaces too large to exhaust: uniformly
random orders or PCT, each execution from its own replayable seed, over one
or several processes.

Execution `i` of a sample with seed `s` runs with seed `execution_seed(s, i)`
(the same whatever the number of processes); `Found.seed` and the note on
a failure give it, and `Simulation(registry, seed=that).run(envelopes,
faults=..., pct=..., pct_steps=...)` replays that execution exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import Any, Literal

from pachytype.simulation import _parallel
from pachytype.simulation._errors import InvariantError, RunawayError, SimulationError
from pachytype.simulation._explore import Found, SimulationReport, faults_of
from pachytype.simulation._run import Chooser, pct, run, seeded
from pachytype.simulation._trace import Outcome, Step, Trace
from pachytype.simulation._world import Context, World

Strategy = Literal["random", "pct"]
"""How a sample orders deliveries: uniformly at random, or PCT."""

_MASK = (1 << 63) - 1


def execution_seed(seed: int, i: int) -> int:
    """The seed of execution `i` of a sample seeded `seed` (splitmix-style mix)."""
    z = (seed * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9) & _MASK
    z ^= z >> 31
    return (z * 0x94D049BB133111EB) & _MASK


def chooser(strategy: Strategy, seed: int, depth: int, steps: int, fault_rate: float) -> Chooser:
    rng = random.Random(seed)
    if strategy == "pct":
        return pct(rng, depth, steps, fault_rate)
    return seeded(rng, fault_rate)


class _Part:
    """What one process sampled."""

    def __init__(self) -> None:
        # outcome key -> (final world, seed of a shortest execution there, its length, executions)
        self.outcomes: dict[Hashable, tuple[World, int, int, int]] = {}
        self.traces: dict[int, list[Step]] = {}  # seed -> steps, for the seeds kept above
        self.executions = 0
        self.deliveries = 0
        self.dead_letters = 0
        self.failed: int | None = None  # the index of an execution that raised


def _sample(
    root: World,
    ctx: Context,
    indices: range,
    *,
    seed: int,
    strategy: Strategy,
    depth: int,
    steps: int,
    fault_rate: float,
    max_deliveries: int,
    on_error: str,
    invariant: Callable[[Outcome], object] | None,
    catch: bool,
) -> _Part:
    part = _Part()
    for i in indices:
        s = execution_seed(seed, i)
        choose = chooser(strategy, s, depth, steps, fault_rate)
        try:
            world, taken = run(
                root,
                ctx,
                choose,
                max_deliveries=max_deliveries,
                until=None,
                on_error="raise" if on_error == "raise" else "dead_letter",
                invariant=invariant,
            )
        except (SimulationError, InvariantError, RunawayError) as error:
            if catch:
                part.failed = i
                return part
            how = f", pct={depth}, pct_steps={steps}" if strategy == "pct" else ""
            error.add_note(
                f"replay this execution: Simulation(registry, seed={s}).run(envelopes, "
                f"faults={faults_of(root)!r}, fault_rate={fault_rate}{how}) from the same "
                f"starting world (execution {i} of the sample seeded {seed})"
            )
            raise
        part.executions += 1
        part.deliveries += len(taken)
        part.dead_letters += sum(1 for t in taken if t.error is not None)
        key = world.outcome_key()
        seen = part.outcomes.get(key)
        if seen is None:
            part.outcomes[key] = (world, s, len(taken), 1)
            part.traces[s] = taken
        elif (len(taken), s) < (seen[2], seen[1]):  # the same choice in any split
            part.outcomes[key] = (seen[0], s, len(taken), seen[3] + 1)
            part.traces.pop(seen[1], None)
            part.traces[s] = taken
        else:
            part.outcomes[key] = (seen[0], seen[1], seen[2], seen[3] + 1)
    return part


def _plain(part: _Part) -> dict[str, Any]:
    """`part` as JSON data: an outcome is the seed of its shortest execution,
    whose world the receiving process gets back by running that seed again."""
    return {
        "outcomes": [[s, length, count] for _, s, length, count in part.outcomes.values()],
        "executions": part.executions,
        "deliveries": part.deliveries,
        "dead_letters": part.dead_letters,
        "failed": part.failed,
    }


def _part(plain: dict[str, Any], rerun: Callable[[int], tuple[World, list[Step]]]) -> _Part:
    part = _Part()
    for s, length, count in plain["outcomes"]:
        world, taken = rerun(int(s))
        part.outcomes[world.outcome_key()] = (world, int(s), int(length), int(count))
        part.traces[int(s)] = taken
    part.executions = int(plain["executions"])
    part.deliveries = int(plain["deliveries"])
    part.dead_letters = int(plain["dead_letters"])
    part.failed = None if plain["failed"] is None else int(plain["failed"])
    return part


def sample(
    root: World,
    ctx: Context,
    *,
    executions: int,
    seed: int,
    strategy: Strategy,
    depth: int,
    steps: int | None,
    fault_rate: float,
    max_deliveries: int,
    on_error: str,
    invariant: Callable[[Outcome], object] | None,
    workers: int,
) -> SimulationReport:
    """Run `executions` sampled executions from `root` and report their outcomes."""
    started = time.perf_counter()
    if steps is None:  # PCT draws its change points among the steps of a typical run
        _, taken = run(
            root,
            ctx,
            seeded(random.Random(seed), fault_rate),
            max_deliveries=max_deliveries,
            until=None,
            on_error="dead_letter",
        )
        steps = max(len(taken), 1)

    def share(indices: range, catch: bool) -> _Part:
        return _sample(
            root,
            ctx,
            indices,
            seed=seed,
            strategy=strategy,
            depth=depth,
            steps=steps or 1,
            fault_rate=fault_rate,
            max_deliveries=max_deliveries,
            on_error=on_error,
            invariant=invariant,
            catch=catch,
        )

    def rerun(s: int) -> tuple[World, list[Step]]:
        return run(
            root,
            ctx,
            chooser(strategy, s, depth, steps or 1, fault_rate),
            max_deliveries=max_deliveries,
            until=None,
            on_error="dead_letter",
        )

    if workers > 1 and executions > 1 and _parallel.can_fork():
        chunks = [range(k, executions, workers) for k in range(workers)]
        plain = _parallel.fork_map(lambda r: _plain(share(r, True)), chunks)
        if any(p is None for p in plain):  # a process died: sample here, it says why
            plain = [_plain(share(range(executions), False))]
        parts = [_part(p, rerun) for p in plain]
        failed = [p.failed for p in parts if p.failed is not None]
        if failed:  # raise it here, with its trace and replay note
            share(range(min(failed), min(failed) + 1), False)
    else:
        parts = [share(range(executions), False)]
    outcomes: dict[Hashable, tuple[World, int, int, int]] = {}
    for part in parts:
        for key, (final, s, length, count) in part.outcomes.items():
            seen = outcomes.get(key)
            if seen is None:
                outcomes[key] = (final, s, length, count)
            elif (length, s) < (seen[2], seen[1]):
                outcomes[key] = (final, s, length, seen[3] + count)
            else:
                outcomes[key] = (seen[0], seen[1], seen[2], seen[3] + count)
    found = []
    traces = {s: t for part in parts for s, t in part.traces.items()}
    for final, s, _, count in outcomes.values():
        if s in traces:  # the steps of the run kept (or rerun) for this seed
            found.append(Found(final.outcome(ctx.addresses), Trace(tuple(traces[s])), count, s))
            continue
        _, taken = run(
            root,
            ctx,
            chooser(strategy, s, depth, steps, fault_rate),
            max_deliveries=max_deliveries,
            until=None,
            on_error="dead_letter",
        )
        found.append(Found(final.outcome(ctx.addresses), Trace(tuple(taken)), count, s))
    processes = f", {workers} processes" if len(parts) > 1 else ""
    return SimulationReport(
        outcomes=tuple(found),
        executions=sum(p.executions for p in parts),
        states=0,
        deliveries=sum(p.deliveries for p in parts),
        dead_letters=sum(p.dead_letters for p in parts),
        complete=False,
        limit=f"sampled {executions:,} executions (seed {seed})",
        faults=faults_of(root),
        seconds=time.perf_counter() - started,
        strategy=f"{strategy}{processes}",
        pct_depth=depth if strategy == "pct" else None,
        pct_steps=steps if strategy == "pct" else None,
    )
