"""The events of event-sourced entities are part of a simulation's outcome:
two worlds with equal states but different events are different outcomes
in `run`, `exhaust` (every search), `sample` and the CLI."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from examples.usernames import refs as usernames
from examples.usernames.refs import signup
from examples.usernames.shard import NameClaimed, shard_of
from examples.usernames.signup import UserId
from pachytype import Envelope, Simulation
from pachytype.cli import main
from pachytype.simulation import Search
from tests.events_pkg.cart import Added, CartId, CartState, Removed
from tests.events_pkg.refs import REGISTRY, cart

K = CartId("k")


def test_equal_states_with_different_events_are_different_outcomes() -> None:
    # Add then remove gives back the init state, with two events kept; a
    # lone remove of an absent item keeps no event.
    one = Simulation(REGISTRY)
    one.run([cart(K).add(item="x"), cart(K).remove(item="x")])
    two = Simulation(REGISTRY)
    two.run([cart(K).remove(item="x")])
    assert one.state(cart(K)) == two.state(cart(K)) == CartState()
    assert one.outcome().states == two.outcome().states
    assert one.outcome() != two.outcome()
    assert one.outcome().events == {cart(K): (Added("x", 1), Removed("x"))}
    assert two.outcome().events == {}
    assert one._world.outcome_key() != two._world.outcome_key()
    assert str(one.outcome()) == (
        "<cart 'k'>: CartState(items={}, closed=False); "
        "events [Added(item='x', qty=1), Removed(item='x')]"
    )


def two_signups() -> list[Envelope[Any]]:
    """Two users ask for two names kept by the same shard: the shard grants
    both in either order (equal states), and its events say in which."""
    assert shard_of("bob") == shard_of("cat")
    return [signup(UserId("u1")).choose(name="bob"), signup(UserId("u2")).choose(name="cat")]


BOTH = {
    (NameClaimed("bob", UserId("u1")), NameClaimed("cat", UserId("u2"))),
    (NameClaimed("cat", UserId("u2")), NameClaimed("bob", UserId("u1"))),
}


@pytest.mark.parametrize("search", ["dpor", "sleep sets", "naive"])
def test_exhaust_counts_orders_that_only_change_the_events_as_two_outcomes(
    search: Search,
) -> None:
    report = Simulation(usernames.REGISTRY).exhaust(two_signups(), search=search)
    assert report.complete and len(report.outcomes) == 2
    one, two = (f.outcome for f in report.outcomes)
    assert one.states == two.states  # equal states...
    shard = usernames.shard(shard_of("bob"))
    assert {f.outcome.events[shard] for f in report.outcomes} == BOTH  # ...different events


def test_parallel_exhaust_and_sampling_tell_the_two_outcomes_apart() -> None:
    parallel = Simulation(usernames.REGISTRY).exhaust(two_signups(), workers=2)
    shard = usernames.shard(shard_of("bob"))
    assert {f.outcome.events[shard] for f in parallel.outcomes} == BOTH
    sampled = Simulation(usernames.REGISTRY).sample(two_signups(), executions=50, workers=2)
    assert {f.outcome.events[shard] for f in sampled.outcomes} == BOTH


def test_the_cli_shows_the_events_that_tell_outcomes_apart() -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "tests.simulation.test_events:two_signups",
            "--registry",
            "examples.usernames.refs",
            "--exhaust",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 distinct outcome(s)" in result.output
    # The table shows the events that tell the two outcomes apart.
    assert "'cat': 'u2'}); events [NameClaimed(name='bob'," in result.output
    assert "'bob': 'u1'}); events [NameClaimed(name='cat'," in result.output
