"""Hypothesis strategies for simulations too big to explore exhaustively.

A *schedule* is a list of choices: step k of `Simulation.run(...,
schedule=s)` takes enabled event number `s[k] % len(enabled)`, and the first
enabled event once the schedule runs out. Choice 0 is always the plainest
step (the oldest channel's next message, delivered, no fault), so
hypothesis shrinks a failing schedule towards the shortest list of
smallest choices: a minimal order, with the fewest faults, that still fails::

    from hypothesis import given
    from pachytype.simulation.strategies import faults, schedules

    @given(schedule=schedules(), faults=faults(drop=1))
    def test_never_loses_stock(schedule, faults):
        sim = Simulation(REGISTRY)
        result = sim.run(scenario(), schedule=schedule, faults=faults)
        assert result.state(refs.stock("shelf")) == 8

or, with the run drawn directly (a failure then prints its trace)::

    @given(run=executions(REGISTRY, scenario(), drop=1))
    def test_never_loses_stock(run):
        assert run.state(refs.stock("shelf")) == 8

Requires hypothesis (a test dependency, not a runtime one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from pachytype._address import Envelope
from pachytype._registry import Registry
from pachytype.simulation._faults import Faults
from pachytype.simulation._simulation import RunResult, Simulation

_WIDEST_CHOICE = 64
"""Choices are taken modulo the number of enabled events; larger adds nothing useful."""


def schedules(max_steps: int = 100) -> st.SearchStrategy[list[int]]:
    """Delivery orders (and fault placements) as lists of choices, up to `max_steps`."""
    return st.lists(st.integers(min_value=0, max_value=_WIDEST_CHOICE), max_size=max_steps)


def faults(drop: int = 0, duplicate: int = 0, reorder: bool = False) -> st.SearchStrategy[Faults]:
    """Fault budgets up to the given ones (shrinking towards no faults)."""
    return st.builds(
        Faults,
        drop=st.integers(min_value=0, max_value=drop),
        duplicate=st.integers(min_value=0, max_value=duplicate),
        reorder=st.booleans() if reorder else st.just(False),
    )


def executions(
    registry: Registry,
    envelopes: Sequence[Envelope[Any]],
    *,
    drop: int = 0,
    duplicate: int = 0,
    reorder: bool = False,
    max_steps: int = 100,
) -> st.SearchStrategy[RunResult]:
    """Runs of `envelopes` on a fresh simulation, each in a drawn order with
    drawn faults (up to the given budgets); shrinks like `schedules`."""

    def run(schedule: list[int], injected: Faults) -> RunResult:
        return Simulation(registry).run(envelopes, schedule=schedule, faults=injected)

    return st.builds(run, schedules(max_steps), faults(drop, duplicate, reorder))
