"""Simulation.exhaust: every delivery order, reduced, deduplicated, bounded."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pachytype import Envelope, Faults, Simulation, SimulationError, SimulationReport
from pachytype.simulation import Kind, Search
from tests.simulation import refs
from tests.simulation.entities import Add, Append
from tests.simulation.refs import REGISTRY


def pairs(n: int, rounds: int) -> list[Envelope[int]]:
    """`n` independent ping-pong pairs, each playing `rounds` balls."""
    envelopes = []
    for i in range(n):
        a, b = refs.player(2 * i), refs.player(2 * i + 1)
        envelopes.append(a.serve(me=a, partner=b, rounds=rounds))
    return envelopes


def racers(n: int, log: str = "l") -> list[Envelope[int]]:
    return [refs.relay(i).forward(to=refs.log(log), value=i) for i in range(n)]


def outcome_set(report: SimulationReport) -> set[Hashable]:
    return {frozenset(f.outcome.states.items()) for f in report.outcomes}


def test_independent_pairs_explore_one_execution_instead_of_every_interleaving() -> None:
    report = Simulation(REGISTRY).exhaust(pairs(3, 4))
    assert report.complete and report.deterministic and report.strategy == "dpor"
    assert report.executions == 1
    assert report.states == 3 * 5 + 1  # one path: the pairs add up instead of multiplying
    (found,) = report.outcomes
    assert all(found.outcome[refs.player(i)] == 2 for i in range(6))
    assert len(found.trace) == 15


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_states_grow_linearly_with_independent_pairs(n: int) -> None:
    report = Simulation(REGISTRY).exhaust(pairs(n, 10))
    assert report.complete and report.executions == 1
    assert report.states == 11 * n + 1


def test_the_sleep_set_search_visits_every_world() -> None:
    report = Simulation(REGISTRY).exhaust(pairs(3, 4), search="sleep sets")
    assert report.complete and report.deterministic and report.strategy == "sleep sets"
    assert report.states == 6**3  # each pair is at one of 6 points of its rally


def test_the_naive_search_visits_every_interleaving() -> None:
    report = Simulation(REGISTRY).exhaust(pairs(2, 3), naive_search=True)
    assert report.naive and report.complete and report.deterministic
    assert report.executions == math.factorial(8) // math.factorial(4) ** 2  # 70


def test_racing_senders_give_one_outcome_per_arrival_order() -> None:
    report = Simulation(REGISTRY).exhaust(racers(4))
    assert report.complete and not report.deterministic
    logs = {f.outcome.state(refs.log("l")) for f in report.outcomes}
    assert len(logs) == 24 and all(sorted(log) == [0, 1, 2, 3] for log in logs)
    assert report.executions == 24


def test_each_outcome_comes_with_a_trace_that_reaches_it() -> None:
    sim = Simulation(REGISTRY)
    for found in sim.exhaust(racers(3)).outcomes:
        appended = [s.message for s in found.trace if s.to == refs.log("l")]
        assert appended == [Append(v) for v in found.outcome.state(refs.log("l"))]
        assert len(found.trace) == 6


def test_commuting_updates_are_deduplicated() -> None:
    items = [refs.members("m").insert(item=s) for s in "abc"]
    relayed = [refs.node(i).hop(value=i, route=(refs.node(9),)) for i in range(3)]
    report = Simulation(REGISTRY).exhaust([*items, *relayed])
    assert len(report.outcomes) == 6  # node 9's log order; the set ends the same
    naive = Simulation(REGISTRY).exhaust([*items, *relayed], naive_search=True)
    assert outcome_set(report) == outcome_set(naive)
    assert report.deliveries * 20 < naive.deliveries


def test_the_search_starts_from_the_current_world_and_leaves_it_alone() -> None:
    sim = Simulation(REGISTRY)
    sim.run([refs.total("t").add(n=10)])
    report = sim.exhaust([refs.total("t").add(n=1)])
    (found,) = report.outcomes
    assert found.outcome[refs.total("t")] == 11
    assert sim.state(refs.total("t")) == 10 and sim.pending == 0


def test_max_executions_makes_the_search_incomplete_and_says_so() -> None:
    report = Simulation(REGISTRY).exhaust(racers(5), max_executions=10)
    assert not report.complete and report.limit == "max_executions=10 reached"
    assert "INCOMPLETE (max_executions=10 reached)" in report.summary()


def test_max_depth_makes_the_search_incomplete_and_says_so() -> None:
    report = Simulation(REGISTRY).exhaust(pairs(1, 100), max_depth=20)
    assert not report.complete and report.limit == "max_depth=20 reached"
    assert report.outcomes == ()


def test_an_error_in_any_order_raises_with_a_shortest_trace() -> None:
    sim = Simulation(REGISTRY)
    adds = [refs.relay(0).forward(to=refs.log("ok"), value=0), refs.total("t").add(n=70)]
    with pytest.raises(SimulationError) as info:
        sim.exhaust([*adds, refs.total("t").add(n=40)])
    assert info.value.received == (Add(70), Add(40))
    assert len(info.value.trace) == 2  # the unrelated relay is not in the shortest trace


def test_with_dead_letters_errors_are_counted_and_the_search_goes_on() -> None:
    report = Simulation(REGISTRY, on_error="dead_letter").exhaust(
        [refs.total("t").add(n=70), refs.total("t").add(n=40)]
    )
    assert report.dead_letters == 1
    (found,) = report.outcomes
    assert found.outcome[refs.total("t")] == 70


def test_timers_fire_in_the_search_and_time_is_part_of_the_world() -> None:
    slow = refs.relay(1).forward(to=refs.log("t"), value=1, delay_ms=500)
    fast = refs.relay(2).forward(to=refs.log("t"), value=2)
    report = Simulation(REGISTRY).exhaust([slow, fast])
    (found,) = report.outcomes
    assert found.outcome[refs.log("t")] == (2, 1)
    assert [s.time for s in found.trace if s.kind is Kind.TICK] == [0.5]


def test_progress_is_reported_on_long_searches() -> None:
    seen: list[tuple[int, int]] = []
    Simulation(REGISTRY).exhaust(racers(6), progress=lambda s, e: seen.append((s, e)))
    assert seen and all(states > 0 for states, _ in seen)


# -- the reduction never loses an outcome ------------------------------------


@st.composite
def hop_systems(draw: st.DrawFn) -> tuple[list[Envelope[Any]], Faults]:
    """A few values, each routed through a few of four nodes (some delayed)."""
    envelopes = []
    for value in range(draw(st.integers(1, 3))):
        path = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
        delay = draw(st.sampled_from([0, 0, 100]))
        route = tuple(refs.node(n) for n in path[1:])
        envelopes.append(refs.node(path[0]).hop(value=value, route=route, delay_ms=delay))
    faults = Faults(
        drop=draw(st.integers(0, 1)),
        duplicate=draw(st.integers(0, 1)),
        reorder=draw(st.booleans()),
    )
    return envelopes, faults


@settings(max_examples=60, deadline=None)
@given(hop_systems())
def test_the_reduced_search_finds_exactly_the_outcomes_of_the_naive_one(
    system: tuple[list[Envelope[Any]], Faults],
) -> None:
    envelopes, faults = system
    sim = Simulation(REGISTRY)
    reduced = sim.exhaust(envelopes, faults=faults)
    naive = sim.exhaust(envelopes, faults=faults, naive_search=True, max_executions=20_000)
    assume(naive.complete)
    assert outcome_set(reduced) == outcome_set(naive)
    assert reduced.deliveries <= naive.deliveries


def test_a_search_that_ends_exactly_at_max_depth_is_complete() -> None:
    report = Simulation(REGISTRY).exhaust(pairs(1, 3), max_depth=4)
    assert report.complete and report.deterministic
    assert not Simulation(REGISTRY).exhaust(pairs(1, 3), max_depth=3).complete


@pytest.mark.parametrize("search", ["dpor", "sleep sets"])
def test_max_states_bounds_the_memory_a_search_keeps(search: Search) -> None:
    report = Simulation(REGISTRY).exhaust(racers(5), max_states=50, search=search)
    assert not report.complete and report.limit == "max_states=50 reached"
    assert report.states < 60
