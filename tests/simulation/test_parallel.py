"""Exhaustive search over several processes (`exhaust(workers=n)`): the
processes hand subtrees to each other, and together they explore exactly
what one process explores: the same executions, the same outcomes with the
same number of executions each and the same shortest traces, whatever the
number of processes."""

from __future__ import annotations

from typing import Any

import pytest

from examples.tcp import refs as tcp_refs
from examples.tcp import scenarios as tcp
from pachytype import Envelope, Faults, Simulation, SimulationError, SimulationReport
from pachytype._registry import Registry
from pachytype.simulation import _parallel_dpor, _world
from tests.simulation import refs
from tests.simulation.refs import REGISTRY
from tests.simulation.test_exhaust import pairs, racers


def tallied(n: int) -> list[Envelope[int]]:
    """`n` relays racing to a tally: n! orders, one outcome."""
    return [refs.relay(i).forward(to=refs.tally("t"), value=i) for i in range(n)]


def routes(n: int, delay_ms: int = 0) -> list[Envelope[Any]]:
    """`n` values each passed along nodes 0 -> 1 -> 2 (each hop after `delay_ms`)."""
    route = (refs.node(1), refs.node(2))
    return [refs.node(0).hop(value=i, route=route, delay_ms=delay_ms) for i in range(n)]


def shown(report: SimulationReport) -> tuple[object, ...]:
    """Everything a report says about what was explored, as text."""
    return (
        report.executions,
        report.complete,
        tuple((str(f.outcome), f.executions, tuple(map(str, f.trace))) for f in report.outcomes),
    )


WORKLOADS: dict[str, tuple[Registry, list[Envelope[Any]], Faults]] = {
    "racing relays": (REGISTRY, racers(5), Faults()),
    "a drop": (REGISTRY, racers(4), Faults(drop=1)),
    "a duplicate": (REGISTRY, racers(4), Faults(duplicate=1)),
    "reordering": (REGISTRY, racers(4), Faults(reorder=True)),
    "a tally": (REGISTRY, tallied(6), Faults()),
    "rallies, races and a drop": (
        REGISTRY,
        [*pairs(2, 2), *racers(3), *tallied(3)],
        Faults(drop=1),
    ),
    "routes, reordered, a duplicate": (REGISTRY, routes(2), Faults(reorder=True, duplicate=1)),
    "routes with timers": (REGISTRY, [*routes(3, delay_ms=5), *racers(2)], Faults()),
    "tcp over a lossy link": (tcp_refs.REGISTRY, tcp.reliable(), Faults(drop=1)),
}


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_processes_explore_exactly_what_one_process_explores(workload: str, workers: int) -> None:
    registry, envelopes, faults = WORKLOADS[workload]
    one = Simulation(registry).exhaust(envelopes, faults=faults, on_error="dead_letter")
    many = Simulation(registry).exhaust(
        envelopes, faults=faults, on_error="dead_letter", workers=workers
    )
    assert one.strategy == "dpor" and many.strategy == f"dpor, {workers} processes"
    assert shown(many) == shown(one)
    assert many.dead_letters <= many.deliveries


def test_the_work_is_shared_and_each_execution_explored_once() -> None:
    sim = Simulation(REGISTRY)
    root = _world.send(sim._world, sim._ctx, tallied(7))
    run = _parallel_dpor.search(
        root,
        sim._ctx,
        workers=2,
        max_depth=10_000,
        max_executions=1_000_000,
        max_states=1_000_000,
        on_error="raise",
    )
    shares = [int(result["executions"]) for result in run.results]
    assert sum(shares) == 5040 == Simulation(REGISTRY).exhaust(tallied(7)).executions
    assert all(share > 0 for share in shares), shares
    assert run.handed_over > 0 and run.tasks > 1


def test_a_failure_found_in_parallel_is_the_one_process_failure() -> None:
    envelopes = [*racers(4), refs.total("t").add(n=101)]
    with pytest.raises(SimulationError) as alone:
        Simulation(REGISTRY).exhaust(envelopes)
    with pytest.raises(SimulationError) as together:
        Simulation(REGISTRY).exhaust(envelopes, workers=2)
    assert str(together.value) == str(alone.value)
    assert len(together.value.trace) == 1


def test_a_bound_stops_every_process() -> None:
    report = Simulation(REGISTRY).exhaust(tallied(7), max_executions=300, workers=2)
    assert not report.complete and report.limit == "max_executions=300 reached"
    assert 300 <= report.executions < 5040


def test_a_cycle_of_worlds_is_searched_as_one_process_searches_it() -> None:
    spin = [refs.spinner("s").spin(me=refs.spinner("s")), *racers(2)]
    one = Simulation(REGISTRY).exhaust(spin)
    many = Simulation(REGISTRY).exhaust(spin, workers=2)
    assert many.strategy == one.strategy and one.strategy.startswith("sleep sets")
    assert shown(many) == shown(one)
