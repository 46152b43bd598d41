"""Liveness: `eventually=` properties, checked on every terminal world and on
every fair cycle of worlds, reported with the shortest trace."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pachytype import Envelope, Faults, Simulation
from pachytype.simulation import Kind, LivenessError, Outcome
from pachytype.simulation._liveness import Property
from tests.simulation import refs
from tests.simulation.entities import Add, Spin
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


# -- fairness -------------------------------------------------------------------


def spinning() -> Envelope[bool]:
    """A spinner that never stops: its worlds go round a cycle of two."""
    s = refs.spinner("s")
    return s.spin(me=s)


def counted(n: int) -> Property:
    def total_reached(outcome: Outcome) -> bool:
        return outcome.get(refs.total("t"), 0) >= n

    return total_reached


def test_a_cycle_that_starves_a_waiting_message_is_unfair_and_not_reported() -> None:
    # The spinner could spin forever while the Add waits in flight, but that
    # run is not fair: the Add's channel has mail all along the cycle and is
    # never served. Every fair run delivers it, and then the total is 1.
    add = refs.total("t").add(n=1)
    report = Simulation(REGISTRY).exhaust([spinning(), add], eventually=counted(1))
    assert report.strategy.startswith("sleep sets (a cycle of worlds")
    assert report.outcomes == ()  # no execution ends: the spinner never stops


def test_a_cycle_that_never_lets_a_due_timer_fire_is_unfair_and_not_reported() -> None:
    # Activations take no virtual time: spinning forever before a reminder
    # fires would make time stand still. A real clock moves on.
    later = refs.total("t").add(n=1).after(timedelta(seconds=1))
    Simulation(REGISTRY).exhaust([spinning(), later], eventually=counted(1))


def test_a_fair_cycle_without_the_property_is_reported_with_a_shortest_fair_lasso() -> None:
    add = refs.total("t").add(n=1)
    with pytest.raises(LivenessError) as info:
        Simulation(REGISTRY).exhaust([spinning(), add], eventually=counted(2))
    error = info.value
    s = refs.spinner("s")
    # The shortest fair lasso delivers the waiting Add first (a lasso whose
    # cycle starves it would be one step shorter, and unfair), then spins.
    assert [(step.to, step.message) for step in error.trace] == [
        (s, Spin(me=s)),
        (refs.total("t"), Add(n=1)),
    ]
    assert [(step.to, step.before, step.after) for step in error.cycle] == [
        (s, True, False),
        (s, False, True),
    ]
    assert error.outcome.states == {refs.total("t"): 1, s: True}
    assert str(error) == (
        "eventually counted.<locals>.total_reached may never hold: after 2 steps the system "
        "can go round a cycle of 2 steps forever without it\n"
        "  states: <spinner 's'>: True, <total 't'>: 1\n"
        "  trace (2 steps):\n"
        "   1. t=0 <spinner 's'> <- Spin(me=<spinner 's'>) from outside: False -> True; "
        "sends Spin(me=<spinner 's'>) to <spinner 's'>\n"
        "   2. t=0 <total 't'> <- Add(n=1) from outside: 0 -> 1\n"
        "  cycle (2 steps, back to the start):\n"
        "   1. t=0 <spinner 's'> <- Spin(me=<spinner 's'>) from <spinner 's'>: True -> False; "
        "sends Spin(me=<spinner 's'>) to <spinner 's'>\n"
        "   2. t=0 <spinner 's'> <- Spin(me=<spinner 's'>) from <spinner 's'>: False -> True; "
        "sends Spin(me=<spinner 's'>) to <spinner 's'>\n"
        "The cycle is fair (every message in flight all along it is delivered in it, and "
        "the clock moves if a timer is set), so a real system can stay in it forever: "
        "break the symmetry or bound the retries."
    )


def test_the_reported_cycle_is_fair_itself_it_serves_every_busy_channel() -> None:
    # Two spinners and nothing else: spinning one of them forever is a
    # shorter cycle, but it starves the other; the cycle shown spins both.
    one, two = refs.spinner("one"), refs.spinner("two")
    with pytest.raises(LivenessError) as info:
        Simulation(REGISTRY).exhaust([one.spin(me=one), two.spin(me=two)], eventually=counted(1))
    cycle = info.value.cycle
    assert len(info.value.trace) == 2
    assert sorted(repr(step.to) for step in cycle) == [repr(one)] * 2 + [repr(two)] * 2
