"""Failures people can read: hypothesis prints a failing run's trace, and
steps show what changed in a large state instead of the whole of it."""

from __future__ import annotations

import pytest
from attrs import frozen
from hypothesis import given, settings

from pachytype import Simulation
from pachytype.simulation._trace import change
from pachytype.simulation.strategies import schedules


def test_a_failing_hypothesis_run_prints_its_whole_trace() -> None:
    from examples.racy import refs as racy
    from examples.racy import scenarios

    @settings(database=None, derandomize=True)
    @given(schedule=schedules())
    def never_loses_stock(schedule: list[int]) -> None:
        result = Simulation(racy.REGISTRY).run(scenarios.lost_update(), schedule=schedule)
        assert result.state(racy.stock("shelf")) == 8

    with pytest.raises(AssertionError) as info:
        never_loses_stock()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "simulation run (8 steps, ends at 0:00:00):" in notes
    assert "   8. t=0 <stock 'shelf'> <- Put(count=3) from <clerk 'bob'>: 5 -> 3" in notes
    assert "  states: " in notes


def test_outside_hypothesis_a_run_notes_nothing() -> None:
    from examples.racy import refs as racy
    from examples.racy import scenarios

    result = Simulation(racy.REGISTRY).run(scenarios.lost_update())
    assert len(result.trace) == 8


@frozen
class Account:
    owner: str
    balance: int
    history: tuple[int, ...]
    tags: frozenset[str] = frozenset()


LONG = "someone with a very long name indeed, long enough to make the state wide"


def test_small_states_show_before_and_after() -> None:
    assert change(5, 3) == "5 -> 3"
    assert change((1,), (1, 2)) == "(1,) -> (1, 2)"


def test_an_unchanged_state_says_so() -> None:
    assert change(7, 7) == "7 (unchanged)"


def test_a_large_attrs_state_shows_only_the_fields_that_changed() -> None:
    before = Account(LONG, 5, (1, 2, 3))
    after = Account(LONG, 3, (1, 2, 3, -2))
    assert change(before, after) == "Account(balance: 5 -> 3, history: (..., 2, 3) + (-2,))"


def test_large_mappings_and_sets_show_what_was_added_removed_or_changed() -> None:
    before = {f"key {i}": i for i in range(20)}
    after = {**{k: v for k, v in before.items() if k != "key 0"}, "key 1": 10, "new": 1}
    assert change(before, after) == "{-'key 0', 'key 1': 1 -> 10, +'new': 1}"
    tags = frozenset(f"tag {i}" for i in range(20))
    shown = change(Account(LONG, 1, (), tags), Account(LONG, 1, (), tags - {"tag 3"} | {"x"}))
    assert shown == "Account(tags: {+'x', -'tag 3'})"
