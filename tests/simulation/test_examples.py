"""The simulation examples: a racy lost update, a TCP-like stream through a
proxy, rock-paper-scissors."""

from __future__ import annotations

from pachytype import Faults, Simulation
from pachytype.simulation import Kind

# -- racy: a lost update that exhaust finds -----------------------------------


def test_exhaust_finds_the_lost_update_and_the_order_that_causes_it() -> None:
    from examples.racy import refs, scenarios

    report = Simulation(refs.REGISTRY).exhaust(scenarios.lost_update())
    assert report.complete and not report.deterministic
    shelves = sorted(f.outcome.state(refs.stock("shelf")) for f in report.outcomes)
    assert shelves == [3, 5, 8]
    lost = next(f for f in report.outcomes if f.outcome[refs.stock("shelf")] == 3)
    at_stock = [str(s.message) for s in lost.trace.received_by(refs.stock("shelf"))]
    assert at_stock == [
        "Get(reply_to=<clerk 'ann'>)",
        "Get(reply_to=<clerk 'bob'>)",
        "Put(count=5)",
        "Put(count=3)",
    ]


def test_the_fix_is_deterministic() -> None:
    from examples.racy import refs, scenarios

    report = Simulation(refs.REGISTRY).exhaust(scenarios.with_add())
    assert report.complete and report.deterministic
    assert report.outcomes[0].outcome[refs.stock("shelf")] == 8


def test_a_seeded_run_of_the_race_is_reproducible() -> None:
    from examples.racy import refs, scenarios

    def shelf(seed: int) -> object:
        return (
            Simulation(refs.REGISTRY, seed=seed)
            .run(scenarios.lost_update())
            .outcome[refs.stock("shelf")]
        )

    assert [shelf(s) for s in range(20)] == [shelf(s) for s in range(20)]
    assert {shelf(s) for s in range(20)} > {8}


# -- tcp: what the network does to a stream, and how sequence numbers fix it -


def screens(faults: Faults) -> set[object]:
    from examples.tcp import refs, scenarios

    report = Simulation(refs.REGISTRY).exhaust(scenarios.naive(), faults=faults)
    assert report.complete
    return {f.outcome[refs.screen("s")] for f in report.outcomes}


def test_the_naive_stream_is_right_only_on_a_perfect_network() -> None:
    assert screens(Faults()) == {"hello, world!"}


def test_reordering_scrambles_the_naive_stream() -> None:
    assert len(screens(Faults(reorder=True))) == 6
    assert "!hello, world" in screens(Faults(reorder=True))


def test_loss_and_duplication_corrupt_the_naive_stream() -> None:
    assert screens(Faults(drop=1)) == {"hello, world!", " world!", "hello,!", "hello, world"}
    assert "hello,hello, world!" in screens(Faults(duplicate=1))


def test_sequence_numbers_acks_and_resending_survive_every_fault() -> None:
    from examples.tcp import refs, scenarios

    faults = Faults(drop=1, duplicate=1, reorder=True)
    report = Simulation(refs.REGISTRY).exhaust(scenarios.reliable(), faults=faults)
    assert report.complete
    texts = {f.outcome.state(refs.receiver("s")).text for f in report.outcomes}
    assert texts == {"hello, world!"}


def test_a_lost_segment_is_resent_when_the_virtual_timer_fires() -> None:
    from examples.tcp import refs, scenarios
    from examples.tcp.stream import ClientState

    report = Simulation(refs.REGISTRY).exhaust(scenarios.reliable(), faults=Faults(drop=1))
    resent = [f for f in report.outcomes if any(s.kind is Kind.DROP for s in f.trace)]
    assert resent
    trace = resent[0].trace
    assert [s.time for s in trace if s.kind is Kind.TICK] == [1.0, 2.0]
    assert trace[-1].after == ClientState("s", next_seq=3, unacked=(), timer_set=False)


def test_calm_checks_on_the_naive_stream() -> None:
    from examples.tcp import refs, scenarios

    sim = Simulation(refs.REGISTRY)
    drops = sim.check_drops(scenarios.naive())
    assert drops.ok, str(drops)  # losing chunks loses text, never invents any
    duplicates = sim.check_duplicates(scenarios.naive())
    assert not duplicates.ok and duplicates.counterexample is not None
    assert duplicates.counterexample.outcome[refs.screen("s")] in {
        "hello,hello, world!",
        "hello, world world!",
        "hello, world!!",
    }


# -- rock-paper-scissors: a determinism check ---------------------------------


def test_the_game_ends_the_same_whatever_order_the_moves_arrive_in() -> None:
    from examples.rock_paper_scissors import refs, scenarios
    from examples.rock_paper_scissors.game import GameState

    faults = Faults(duplicate=1, reorder=True)
    report = Simulation(refs.REGISTRY).exhaust(scenarios.match(), faults=faults)
    assert report.complete and report.deterministic and report.executions > 1
    game = report.outcomes[0].outcome[refs.game("g1")]
    assert game == GameState((("ann", "rock"), ("bob", "paper")), winner="bob")


def test_every_hand_against_every_hand() -> None:
    from examples.rock_paper_scissors.game import winner

    assert winner(("a", "rock"), ("b", "scissors")) == "a"
    assert winner(("a", "rock"), ("b", "paper")) == "b"
    assert winner(("a", "paper"), ("b", "paper")) == "draw"
    assert winner(("a", "scissors"), ("b", "paper")) == "a"
