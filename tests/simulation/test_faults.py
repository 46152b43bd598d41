"""Faults (drop, duplicate, reorder) in exhaustive search, and the CALM checks."""

from __future__ import annotations

from pachytype import Envelope, Faults, Simulation
from pachytype.simulation import Kind, at_most
from tests.simulation import refs
from tests.simulation.refs import REGISTRY


def through_relay(values: range, log: str = "l") -> list[Envelope[int]]:
    return [refs.relay(1).forward(to=refs.log(log), value=v) for v in values]


def logs(faults: Faults, values: range = range(3)) -> set[object]:
    report = Simulation(REGISTRY).exhaust(through_relay(values), faults=faults)
    assert report.complete
    return {f.outcome[refs.log("l")] for f in report.outcomes}


def test_without_faults_one_sender_to_one_receiver_keeps_order() -> None:
    assert logs(Faults()) == {(0, 1, 2)}


def test_reorder_lets_messages_overtake_each_other() -> None:
    assert logs(Faults(reorder=True)) == {
        (0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)
    }  # fmt: skip


def test_drop_loses_at_most_its_budget() -> None:
    assert logs(Faults(drop=1)) == {(0, 1, 2), (1, 2), (0, 2), (0, 1)}
    assert len(logs(Faults(drop=2))) == 7


def test_duplicate_delivers_a_message_again() -> None:
    assert logs(Faults(duplicate=1)) == {(0, 1, 2), (0, 0, 1, 2), (0, 1, 1, 2), (0, 1, 2, 2)}


def test_messages_from_outside_and_to_oneself_are_never_faulted() -> None:
    direct = [refs.log("l").append(value=v) for v in range(3)]
    report = Simulation(REGISTRY).exhaust(direct, faults=Faults(drop=1, duplicate=1, reorder=True))
    assert [f.outcome[refs.log("l")] for f in report.outcomes] == [(0, 1, 2)]


def test_fault_steps_show_in_the_trace() -> None:
    report = Simulation(REGISTRY).exhaust(through_relay(range(2)), faults=Faults(drop=1))
    dropped = next(f for f in report.outcomes if f.outcome[refs.log("l")] == (1,))
    (step,) = [s for s in dropped.trace if s.kind is Kind.DROP]
    assert step.to == refs.log("l") and step.sender == refs.relay(1)
    assert "<log 'l'> <- Append(value=0) from <relay 1>: DROPPED" in str(dropped.trace)


def test_a_grow_only_set_passes_both_calm_checks() -> None:
    sim = Simulation(REGISTRY)
    envelopes: list[Envelope[object]] = [
        refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(2)
    ]
    envelopes += [refs.node(i).hop(value=i, route=(refs.node(5),)) for i in range(2)]
    drops = sim.check_drops(envelopes)
    assert drops.ok, str(drops)
    inserts = [refs.members("m").insert(item=x) for x in "ab"]
    assert sim.check_duplicates(inserts).ok


def test_a_counter_fails_the_duplicates_check_with_a_counterexample() -> None:
    sim = Simulation(REGISTRY)
    envelopes = [refs.relay(1).forward(to=refs.log("l"), value=7)]
    check = sim.check_duplicates(envelopes)
    assert not check.ok
    assert check.counterexample is not None
    assert check.counterexample.outcome[refs.log("l")] == (7, 7)
    text = str(check)
    assert text.startswith("under duplicates the outcome is the same: BROKEN\n")
    assert "counterexample: <log 'l'>: (7, 7), <relay 1>: 1" in text
    assert "DUPLICATED" in text


def test_a_non_monotone_system_fails_the_drops_check() -> None:
    # The log's *last* value decides; losing a message can change it to one no
    # fault-free order produces: at most fails when the order is not by information.
    sim = Simulation(REGISTRY)
    envelopes = through_relay(range(2))
    check = sim.check_drops(envelopes, le=lambda a, b: a == b)
    assert not check.ok and check.counterexample is not None
    assert sim.check_drops(envelopes).ok  # by subsequence, it holds


def test_at_most_orders_states_by_information() -> None:
    assert at_most(frozenset({1}), frozenset({1, 2}))
    assert not at_most(frozenset({3}), frozenset({1, 2}))
    assert at_most((1, 3), (1, 2, 3)) and not at_most((3, 1), (1, 2, 3))
    assert at_most("hlo", "hello") and not at_most("oh", "hello")
    assert at_most(2, 3) and not at_most(4, 3)
    assert at_most(None, {"a": 1})
    assert at_most({"a": (1,)}, {"a": (1, 2), "b": ()}) and not at_most({"c": 1}, {"a": 1})
    assert not at_most("a", 1)
