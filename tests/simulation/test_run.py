"""Simulation.run: one deterministic execution, its trace, virtual time, errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from pachytype import (
    Faults,
    InMemory,
    RunawayError,
    Simulation,
    SimulationError,
    UnknownEntityError,
    WrongMessageError,
)
from pachytype._address import Ref as _Ref
from pachytype._address import make_envelope, make_ref
from pachytype.simulation import Kind
from tests.simulation import refs
from tests.simulation.entities import Add, Append, Ball, Forward
from tests.simulation.refs import REGISTRY


def serve(rounds: int, a: int = 0, b: int = 1) -> Any:
    pa, pb = refs.player(a), refs.player(b)
    return pa.serve(me=pa, partner=pb, rounds=rounds)


def racers(n: int) -> list[Any]:
    return [refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(n)]


def test_run_delivers_until_quiet_and_returns_states_and_trace(
    simulation: type[Simulation],
) -> None:
    result = simulation(REGISTRY).run([serve(4)])
    assert result.state(refs.player(0)) == 2
    assert result.state(refs.player(1)) == 2
    assert len(result.trace) == 5  # the serve, then four balls
    first, second = result.trace[0], result.trace[1]
    assert first.kind is Kind.DELIVER and first.sender is None
    assert first.to == refs.player(0) and (first.before, first.after) == (0, 0)
    assert [e.to for e in first.sent] == [refs.player(1)]
    assert second.sender == refs.player(0) and second.to == refs.player(1)
    assert second.message == Ball(4, back=refs.player(0), here=refs.player(1))
    assert (second.before, second.after) == (0, 1)
    assert str(result.trace).splitlines()[1] == (
        "   2. t=0 <player 1> <- Ball(left=4, back=<player 0>, here=<player 1>) from "
        "<player 0>: 0 -> 1; sends Ball(left=3, back=<player 1>, here=<player 0>) to <player 0>"
    )


def test_the_same_seed_gives_the_same_execution() -> None:
    traces = {str(Simulation(REGISTRY, seed=7).run(racers(5)).trace) for _ in range(3)}
    assert len(traces) == 1


def test_seeds_choose_different_orders() -> None:
    logs = {Simulation(REGISTRY, seed=s).run(racers(4)).state(refs.log("l")) for s in range(30)}
    assert len(logs) > 5
    assert all(sorted(log) == [0, 1, 2, 3] for log in logs)


def test_without_faults_messages_between_two_entities_keep_their_order() -> None:
    route = (refs.node(2),)
    envelopes = [refs.node(1).hop(value=v, route=route) for v in range(6)]
    for seed in range(10):
        result = Simulation(REGISTRY, seed=seed).run(envelopes)
        assert result.state(refs.node(2)) == tuple(range(6))


def test_runs_continue_from_the_world_the_last_one_left() -> None:
    sim = Simulation(REGISTRY)
    sim.run([refs.total("t").add(n=2)])
    result = sim.run([refs.total("t").add(n=3)])
    assert result.state(refs.total("t")) == 5
    assert len(result.trace) == 1
    assert sim.state(refs.total("t")) == 5
    assert sim.state(refs.total("never")) == 0
    assert refs.total("never") not in sim.outcome().states


def test_the_states_are_the_values_other_ecosystems_produce() -> None:
    envelopes = [serve(5), refs.relay(1).forward(to=refs.log("x"), value=9)]
    simulated = Simulation(REGISTRY).run(envelopes)

    async def in_memory() -> dict[str, object]:
        async with InMemory(REGISTRY) as eco:
            await eco.send(*envelopes)
            await eco.settle()
            return {
                "p0": await eco.state(refs.player(0)),
                "p1": await eco.state(refs.player(1)),
                "log": await eco.state(refs.log("x")),
            }

    expected = asyncio.run(in_memory())
    assert expected == {
        "p0": simulated.state(refs.player(0)),
        "p1": simulated.state(refs.player(1)),
        "log": simulated.state(refs.log("x")),
    }


def test_delayed_envelopes_fire_on_the_virtual_clock_instantly() -> None:
    sim = Simulation(REGISTRY)
    envelopes = [
        refs.relay(1).forward(to=refs.log("late"), value=1, delay_ms=3_600_000),
        refs.relay(2).forward(to=refs.log("late"), value=2, delay_ms=60_000),
    ]
    result = sim.run(envelopes)
    assert result.state(refs.log("late")) == (2, 1)
    assert sim.now == timedelta(hours=1)
    ticks = [s for s in result.trace if s.kind is Kind.TICK]
    assert [s.time for s in ticks] == [60.0, 3600.0]
    assert "t=3600 clock advances" in str(result.trace)


def test_until_stops_the_clock_and_advance_moves_it_on() -> None:
    sim = Simulation(REGISTRY)
    reminder = refs.log("r").append(value=1).after(timedelta(minutes=10))
    result = sim.run([reminder], until=timedelta(minutes=5))
    assert sim.now == timedelta(minutes=5)
    assert refs.log("r") not in result.outcome.states
    assert sim.pending == 1
    assert sim.advance(timedelta(minutes=4)).trace.steps == ()
    later = sim.advance(timedelta(minutes=2))
    assert later.state(refs.log("r")) == (1,)
    assert sim.now == timedelta(minutes=11)


def test_an_activation_error_shows_the_entity_its_state_its_messages_and_the_trace() -> None:
    sim = Simulation(REGISTRY)
    with pytest.raises(SimulationError) as info:
        sim.run([refs.total("t").add(n=60), refs.total("t").add(n=30), refs.total("t").add(n=20)])
    error = info.value
    assert error.address == refs.total("t")
    assert error.state == 90
    assert error.message == Add(20)
    assert error.received == (Add(60), Add(30), Add(20))
    assert len(error.trace) == 3 and error.trace[-1].error is error.error
    assert isinstance(error.__cause__, ValueError)
    text = str(error)
    assert text.startswith(
        "entity 'total' (id 't') raised ValueError: total would be 110, over 100\n"
        "  while handling: Add(n=20)\n"
        "  in state: 90\n"
        "  messages it received, in order:\n"
        "    1. Add(n=60)\n"
        "    2. Add(n=30)\n"
        "    3. Add(n=20)   <- raised here\n"
        "  trace (3 steps):\n"
    )
    assert "RAISED ValueError: total would be 110, over 100 (state stays 90)" in text
    assert "Fix `activate` for this message in this state" in text


def test_with_dead_letters_the_entity_keeps_its_state_and_goes_on() -> None:
    sim = Simulation(REGISTRY, on_error="dead_letter")
    result = sim.run([refs.total("t").add(n=99), refs.total("t").add(n=5), refs.total("t").add()])
    assert result.state(refs.total("t")) == 100
    (dead,) = result.dead_letters
    assert dead.message == Add(5) and isinstance(dead.error, ValueError)


def test_an_invalid_envelope_returned_by_activate_is_an_activation_error() -> None:
    sim = Simulation(REGISTRY)
    bad = make_ref(_Ref, "log", "x")
    with pytest.raises(SimulationError, match="cannot receive a Hop"):
        sim.run([refs.node(1).hop(value=1, route=(bad,))])
    assert sim.state(refs.node(1)) == ()


def test_a_runaway_system_is_stopped_with_a_clear_report() -> None:
    with pytest.raises(RunawayError) as info:
        Simulation(REGISTRY).run([serve(10_000)], max_deliveries=50)
    text = str(info.value)
    assert text.startswith(
        "the system did not go quiet within 50 deliveries (1 messages still in flight); "
        "most activated: <player 0> x25, <player 1> x25\n"
    )
    assert "raise max_deliveries=..." in text
    assert len(info.value.trace) == 50


def test_bad_envelopes_from_outside_are_refused_and_nothing_is_sent() -> None:
    sim = Simulation(REGISTRY)
    with pytest.raises(WrongMessageError, match="entity 'log' \\(id 'x'\\) cannot receive"):
        sim.run(
            [refs.log("x").append(value=1), make_envelope(refs.log("x"), Forward(refs.log("x"), 1))]
        )
    ghost: _Ref[Any, Any] = make_ref(_Ref, "ghost", 1)
    with pytest.raises(UnknownEntityError, match="unknown entity type 'ghost'"):
        sim.run([ghost.post(Append(1))])
    with pytest.raises(TypeError, match="expected an Envelope built by a ref"):
        sim.run([Append(1)])  # type: ignore[list-item]
    assert sim.pending == 0 and sim.outcome().states == {}


def test_faults_in_a_run_spend_their_budget() -> None:
    route = (refs.node(2),)
    envelopes = [refs.node(1).hop(value=v, route=route) for v in range(20)]
    lengths = set()
    for seed in range(10):
        result = Simulation(REGISTRY, seed=seed).run(
            envelopes, faults=Faults(drop=2, duplicate=1), fault_rate=0.5
        )
        drops = [s for s in result.trace if s.kind is Kind.DROP]
        dups = [s for s in result.trace if s.kind is Kind.DUPLICATE]
        assert len(drops) <= 2 and len(dups) <= 1
        lengths.add(len(result.state(refs.node(2))))
    assert lengths - {20}


def test_faults_parse_from_text_and_say_what_is_wrong() -> None:
    assert Faults.parse("drop=2, duplicate,reorder") == Faults(drop=2, duplicate=1, reorder=True)
    assert Faults.parse("") == Faults()
    assert str(Faults(drop=1, reorder=True)) == "drop=1,reorder"
    with pytest.raises(ValueError, match="unknown fault 'lose': use drop"):
        Faults.parse("lose")
    with pytest.raises(ValueError, match="must be >= 0"):
        Faults(drop=-1)


def test_until_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="until must not be negative"):
        Simulation(REGISTRY).run([], until=timedelta(seconds=-1))
