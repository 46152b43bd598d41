"""Liveness: `eventually=` properties, checked on every terminal world and on
every cycle of worlds, reported with the shortest trace."""

from __future__ import annotations

import pytest

from pachytype import Faults, Simulation
from pachytype.simulation import Kind, LivenessError, Outcome
from tests.simulation import refs
from tests.simulation.refs import REGISTRY


def test_the_polite_election_can_livelock_and_the_cycle_is_shown() -> None:
    from examples.election import refs as election
    from examples.election import scenarios

    with pytest.raises(LivenessError) as info:
        Simulation(election.REGISTRY).exhaust(scenarios.polite(), eventually=scenarios.has_leader)
    error = info.value
    # Shortest stem: both start; then round and round: both claims cross,
    # both back off, the clock moves, both retry.
    assert [s.message for s in error.trace] == [m.message for m in scenarios.polite()]
    assert [s.kind for s in error.cycle] == [
        Kind.DELIVER,
        Kind.DELIVER,
        Kind.TICK,
        Kind.DELIVER,
        Kind.DELIVER,
    ]
    phases = [s.after.phase for s in error.cycle if s.kind is Kind.DELIVER]  # type: ignore[attr-defined]
    assert phases == ["backing off", "backing off", "claiming", "claiming"]
    text = str(error)
    assert "can go round a cycle of 5 steps forever without it" in text
    assert "cycle (5 steps, back to the start):" in text
    # Steps show what changed in a state, not the whole of it.
    assert "<- Claim(candidate='ann') from <candidate 'ann'>: " in text
    assert "CandidateState(phase: 'claiming' -> 'backing off'); sends Retry()" in text


def test_the_polite_election_does_elect_a_leader_in_some_orders() -> None:
    from examples.election import refs as election
    from examples.election import scenarios

    report = Simulation(election.REGISTRY).exhaust(scenarios.polite())
    assert report.strategy.startswith("sleep sets (a cycle of worlds")
    assert report.outcomes and all(scenarios.has_leader(f.outcome) for f in report.outcomes)


def test_the_tie_break_always_elects_a_leader() -> None:
    from examples.election import refs as election
    from examples.election import scenarios

    report = Simulation(election.REGISTRY).exhaust(
        scenarios.tie_break(), eventually=scenarios.has_leader
    )
    assert report.complete and report.strategy == "dpor" and len(report.outcomes) == 2


def logged_everything(outcome: Outcome) -> bool:
    return len(outcome.get(refs.log("l"), ())) == 3


def test_a_terminal_world_without_the_property_is_reported_with_a_shortest_trace() -> None:
    envelopes = [refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(3)]
    Simulation(REGISTRY).exhaust(envelopes, eventually=logged_everything)  # holds
    with pytest.raises(LivenessError) as info:
        Simulation(REGISTRY).exhaust(envelopes, faults=Faults(drop=1), eventually=logged_everything)
    error = info.value
    assert not error.cycle
    assert [s.kind for s in error.trace].count(Kind.DROP) == 1
    assert len(error.trace) == 6  # three relays, two appends, one drop
    assert "does not hold: an execution ends after 6 steps without it" in str(error)
