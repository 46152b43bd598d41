"""How exhaust searches: DPOR, its fallback to sleep sets, executions as a
stream, and sampling (random and PCT) with replayable seeds. Over several
processes: test_parallel.py."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from itertools import islice

import pytest

from pachytype import Faults, Simulation, SimulationError, SimulationReport
from pachytype.simulation import InvariantError, LivenessError, Outcome
from tests.simulation import refs
from tests.simulation.refs import REGISTRY
from tests.simulation.test_exhaust import pairs, racers


def outcomes(report: SimulationReport) -> set[Hashable]:
    return {frozenset(f.outcome.states.items()) for f in report.outcomes}


# -- DPOR ---------------------------------------------------------------------


def test_dpor_explores_one_execution_per_arrival_order_and_no_more() -> None:
    report = Simulation(REGISTRY).exhaust(racers(5))
    assert report.strategy == "dpor" and report.complete
    assert report.executions == len(report.outcomes) == 120


def test_dpor_and_the_sleep_set_search_agree_on_outcomes_and_shortest_traces() -> None:
    envelopes = [*racers(3), *pairs(2, 2)]
    for faults in (Faults(), Faults(drop=1), Faults(duplicate=1), Faults(reorder=True)):
        fast = Simulation(REGISTRY).exhaust(envelopes, faults=faults)
        slow = Simulation(REGISTRY).exhaust(envelopes, faults=faults, search="sleep sets")
        assert outcomes(fast) == outcomes(slow)
        lengths = {frozenset(f.outcome.states.items()): len(f.trace) for f in slow.outcomes}
        assert all(
            len(f.trace) == lengths[frozenset(f.outcome.states.items())] for f in fast.outcomes
        )
        assert fast.states <= slow.states


def test_an_invariant_over_two_independent_entities_sees_every_combination() -> None:
    # Each pair alone is one path; the invariant reads both rallies, so every
    # combination of their progress must be checked, as the search visiting
    # every world checks it.
    def watcher(seen: set[tuple[object, object]]) -> Callable[[Outcome], None]:
        def watch(outcome: Outcome) -> None:
            seen.add((outcome.get(refs.player(1)), outcome.get(refs.player(3))))

        return watch

    dpor: set[tuple[object, object]] = set()
    every: set[tuple[object, object]] = set()
    Simulation(REGISTRY).exhaust(pairs(2, 4), invariant=watcher(dpor))
    Simulation(REGISTRY).exhaust(pairs(2, 4), invariant=watcher(every), search="sleep sets")
    assert dpor == every and len(every) == 9  # None, 1 or 2 balls each


def test_an_invariant_that_looks_at_everything_falls_back_to_the_sleep_set_search() -> None:
    def small(outcome: Outcome) -> None:
        assert len(outcome.states) < 10

    report = Simulation(REGISTRY).exhaust(racers(3), invariant=small)
    assert report.strategy.startswith("sleep sets (the invariant looks at every entity")
    assert len(report.outcomes) == 6


def test_an_invariant_failure_shows_only_the_steps_it_depends_on() -> None:
    def under_50(outcome: Outcome) -> None:
        assert outcome.get(refs.total("t"), 0) <= 50

    unrelated = pairs(2, 3)
    adds = [refs.total("t").add(n=30), refs.total("t").add(n=30)]
    with pytest.raises(InvariantError) as info:
        Simulation(REGISTRY).exhaust([*unrelated, *adds], invariant=under_50)
    assert [s.to for s in info.value.trace] == [refs.total("t"), refs.total("t")]


def test_an_activation_error_is_raised_with_its_causal_past_only() -> None:
    with pytest.raises(SimulationError) as info:
        Simulation(REGISTRY).exhaust([*racers(3), refs.total("t").add(n=101)])
    assert len(info.value.trace) == 1


# -- as a stream --------------------------------------------------------------


def test_executions_stream_and_stop_when_the_caller_stops() -> None:
    sim = Simulation(REGISTRY)
    first = list(islice(sim.explore(racers(6)), 3))
    assert len(first) == 3
    for execution in first:
        log = execution.outcome.state(refs.log("l"))
        assert len(log) == 6 and len(execution.trace) == 12
    assert len({e.outcome.state(refs.log("l")) for e in sim.explore(racers(3))}) == 6


def test_a_stream_raises_an_activation_error() -> None:
    with pytest.raises(SimulationError):
        list(Simulation(REGISTRY).explore([refs.total("t").add(n=101)]))


def test_stopping_a_stream_stops_the_search() -> None:
    sim = Simulation(REGISTRY)
    full = sim.exhaust(racers(7))
    assert full.executions == 5040
    stream = sim.explore(racers(7))
    first = next(stream)
    assert len(first.trace) == 14
    # Only the first execution's own path has run: 15 worlds, 14 deliveries.
    assert (stream.executions, stream.states, stream.deliveries) == (1, 15, 14)
    for _ in islice(stream, 9):
        pass
    assert stream.executions == 10
    assert stream.states * 100 < full.states
    report = stream.report()
    assert not report.complete
    assert report.limit == "stopped by the caller after 10 executions"
    assert len(report.outcomes) == 10  # each execution of the race is its own outcome
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)


def test_a_drained_stream_reports_what_exhaust_reports() -> None:
    stream = Simulation(REGISTRY).explore(racers(4))
    executions = list(stream)
    report = stream.report()
    exhausted = Simulation(REGISTRY).exhaust(racers(4))
    assert report.complete and report.strategy == "dpor"
    assert len(executions) == report.executions == exhausted.executions == 24
    assert report.states == exhausted.states
    assert outcomes(report) == outcomes(exhausted)
    assert {str(e.outcome) for e in executions} == {str(f.outcome) for f in exhausted.outcomes}


def test_a_stream_raises_a_broken_invariant_when_the_execution_that_broke_it_ends() -> None:
    def short(outcome: Outcome) -> None:
        assert len(outcome.get(refs.log("l"), ())) < 3, "the log reached 3"

    stream = Simulation(REGISTRY).explore(racers(4), invariant=short)
    with pytest.raises(InvariantError) as info:
        next(stream)
    assert stream.executions == 0
    error = info.value
    # The trace is the failure's causal past: three relays and their appends.
    assert len(error.trace) == 6
    assert len(error.outcome.state(refs.log("l"))) == 3


def test_a_stream_over_a_cycle_of_worlds_yields_each_final_world_once() -> None:
    from examples.election import refs as election
    from examples.election import scenarios

    stream = Simulation(election.REGISTRY).explore(scenarios.polite())
    outcomes = [str(e.outcome) for e in stream]
    assert stream.report().strategy.startswith("sleep sets (a cycle of worlds")
    exhausted = Simulation(election.REGISTRY).exhaust(scenarios.polite())
    assert sorted(outcomes) == sorted(str(f.outcome) for f in exhausted.outcomes)


# -- sampling -------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_a_sample_finds_outcomes_and_each_replays_from_its_seed(strategy: str) -> None:
    sim = Simulation(REGISTRY, seed=7)
    report = sim.sample(racers(3), executions=300, strategy=strategy)  # type: ignore[arg-type]
    assert not report.complete and report.executions == 300
    assert len(report.outcomes) == 6  # every arrival order, by chance
    for found in report.outcomes:
        assert found.seed is not None
        fresh = Simulation(REGISTRY, seed=found.seed)
        if strategy == "pct":
            again = fresh.run(racers(3), pct=3, pct_steps=6)
        else:
            again = fresh.run(racers(3))
        assert again.trace == found.trace


def test_a_sample_is_the_same_over_several_processes() -> None:
    one = Simulation(REGISTRY).sample(racers(4), executions=200, seed=3)
    two = Simulation(REGISTRY).sample(racers(4), executions=200, seed=3, workers=2)
    assert outcomes(one) == outcomes(two)
    assert {f.seed for f in one.outcomes} == {f.seed for f in two.outcomes}


def test_a_failing_sampled_execution_says_how_to_replay_it() -> None:
    from examples.racy import refs as racy
    from examples.racy import scenarios

    def keeps_stock(outcome: Outcome) -> None:
        assert outcome.get(racy.stock("shelf")) != 3

    with pytest.raises(InvariantError) as info:
        Simulation(racy.REGISTRY).sample(
            scenarios.lost_update(), executions=200, strategy="pct", invariant=keeps_stock
        )
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "replay this execution: Simulation(registry, seed=" in notes
    assert "pct=3" in notes


def test_a_sample_checks_eventually_where_each_execution_ends_and_says_how_to_replay() -> None:
    def whole(outcome: Outcome) -> bool:
        return len(outcome.get(refs.log("l"), ())) == 3

    sim = Simulation(REGISTRY, seed=3)
    sim.sample(racers(3), executions=20, eventually=whole)  # every execution logs all three
    dropped = Faults(drop=1)
    with pytest.raises(LivenessError) as info:
        sim.sample(
            racers(3),
            executions=50,
            faults=dropped,
            fault_rate=0.5,
            strategy="pct",
            eventually=whole,
        )
    (note,) = info.value.__notes__
    assert note.startswith("replay it: Simulation(registry, seed=")
    seed = int(note.split("seed=")[1].split(")")[0])
    steps = int(note.split("pct_steps=")[1].split(")")[0])
    replayed = Simulation(REGISTRY, seed=seed).run(
        racers(3), faults=dropped, fault_rate=0.5, pct=3, pct_steps=steps
    )
    assert not whole(replayed.outcome)
    assert [s.describe() for s in replayed.trace] == [s.describe() for s in info.value.trace]
