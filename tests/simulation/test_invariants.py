"""Invariants checked on every world a simulation reaches."""

from __future__ import annotations

import pytest

from pachytype import Simulation
from pachytype.simulation import InvariantError, Outcome
from tests.simulation import refs
from tests.simulation.refs import REGISTRY


def at_most_50(outcome: Outcome) -> None:
    total = outcome.get(refs.total("t"), 0)
    assert total <= 50, f"total is {total}"


def test_a_run_stops_at_the_first_step_that_breaks_an_invariant() -> None:
    sim = Simulation(REGISTRY)
    with pytest.raises(InvariantError) as info:
        sim.run([refs.total("t").add(n=30), refs.total("t").add(n=30)], invariant=at_most_50)
    error = info.value
    assert len(error.trace) == 2 and error.outcome.state(refs.total("t")) == 60
    assert isinstance(error.__cause__, AssertionError)
    text = str(error)
    assert text.startswith("invariant at_most_50 failed after 2 steps: AssertionError: total is 60")
    assert "  states: <total 't'>: 60\n" in text
    assert "<total 't'> <- Add(n=30) from outside: 30 -> 60" in text


def test_exhaust_finds_a_shortest_trace_to_a_world_that_breaks_an_invariant() -> None:
    from examples.racy import refs as racy
    from examples.racy import scenarios
    from examples.racy.stock import ClerkId

    shelf = racy.stock("shelf")

    def never_loses_stock(outcome: Outcome) -> None:
        assert outcome.get(shelf) != 3, "bob's put overwrote ann's"

    with pytest.raises(InvariantError) as info:
        Simulation(racy.REGISTRY).exhaust(scenarios.lost_update(), invariant=never_loses_stock)
    # The shortest way there: Bob restocks alone before Ann's put ever lands.
    trace = info.value.trace
    assert [s.to for s in trace] == [
        racy.clerk(ClerkId("bob")),
        shelf,
        racy.clerk(ClerkId("bob")),
        shelf,
    ]
    assert trace[-1].after == 3
    assert "bob's put overwrote ann's" in str(info.value)


def test_the_naive_search_checks_invariants_too() -> None:
    envelopes = [refs.total("t").add(n=30), refs.total("t").add(n=30)]
    with pytest.raises(InvariantError, match="failed after 2 steps"):
        Simulation(REGISTRY).exhaust(envelopes, invariant=at_most_50, naive_search=True)


def test_an_invariant_that_holds_changes_nothing() -> None:
    envelopes = [refs.total("t").add(n=20), refs.total("t").add(n=30)]
    report = Simulation(REGISTRY).exhaust(envelopes, invariant=at_most_50)
    assert report.complete and report.outcomes[0].outcome.state(refs.total("t")) == 50
