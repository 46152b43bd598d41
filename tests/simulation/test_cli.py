"""`pachytype simulate MODULE:SCENARIO [--exhaust] [--faults ...]`."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result

from pachytype import Envelope
from pachytype.cli import main
from pachytype.simulation import Outcome


def simulate(*args: str) -> Result:
    return CliRunner().invoke(main, ["simulate", *args])


def test_exhaust_prints_every_outcome_and_the_trace_that_loses_an_update() -> None:
    result = simulate("examples.racy.scenarios:lost_update", "--exhaust")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "search complete: 3 distinct outcome(s)" in out
    assert "NOT deterministic" in out
    assert "<stock 'shelf'>: 3" in out and "<stock 'shelf'>: 8" in out
    assert "shortest trace to outcome 1 (8 steps)" in out
    assert "<stock 'shelf'> <- Put(count=3) from <clerk 'bob'>: 5 -> 3" in out


def test_check_deterministic_fails_a_racy_scenario_and_passes_a_fixed_one() -> None:
    racy = simulate("examples.racy.scenarios:lost_update", "--exhaust", "--check-deterministic")
    assert racy.exit_code == 1
    fixed = simulate("examples.racy.scenarios:with_add", "--exhaust", "--check-deterministic")
    assert fixed.exit_code == 0, fixed.output
    assert "deterministic: 1 distinct outcome(s)" in fixed.output


def test_faults_are_injected_into_the_search() -> None:
    result = simulate("examples.tcp.scenarios:naive", "--exhaust", "--faults", "reorder")
    assert result.exit_code == 0, result.output
    assert "6 distinct outcome(s)" in result.output and "faults: reorder" in result.output
    assert "(3 more; --traces N to print more)" in result.output


def test_a_single_run_prints_the_final_states_and_its_trace() -> None:
    result = simulate("examples.rock_paper_scissors.scenarios:match", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "final states (seed 4, faults: none)" in result.output
    assert "winner='bob'" in result.output
    assert "trace (4 steps)" in result.output


def test_mistakes_are_explained() -> None:
    no_colon = simulate("examples.racy.scenarios")
    assert no_colon.exit_code == 2 and "write MODULE:SCENARIO" in no_colon.output
    missing = simulate("examples.racy.scenarios:nope")
    assert missing.exit_code == 2
    assert "examples.racy.scenarios has no function 'nope'" in missing.output
    bad_faults = simulate("examples.racy.scenarios:lost_update", "--faults", "lose")
    assert bad_faults.exit_code == 2 and "unknown fault 'lose'" in bad_faults.output
    no_registry = simulate(
        "examples.racy.scenarios:lost_update", "--registry", "examples.racy.stock:NOPE"
    )
    assert no_registry.exit_code == 2
    assert "no registry found (tried examples.racy.stock:NOPE)" in no_registry.output


def test_an_activation_error_prints_the_entity_its_messages_and_the_trace() -> None:
    result = simulate("tests.simulation.test_cli:overflow", "--registry", "tests.simulation.refs")
    assert result.exit_code == 1
    assert "SimulationError: entity 'total' (id 't') raised ValueError" in result.output
    assert "    2. Add(n=60)   <- raised here" in result.output


def overflow() -> list[object]:
    """A scenario whose second message makes `Total` raise."""
    from tests.simulation import refs

    return [refs.total("t").add(n=60), refs.total("t").add(n=60)]


# -- liveness, sampling, workers ------------------------------------------------------


def test_eventually_shows_the_livelock_of_the_polite_election_with_its_cycle() -> None:
    result = simulate(
        "examples.election.scenarios:polite",
        "--exhaust",
        "--eventually",
        "examples.election.scenarios:has_leader",
    )
    assert result.exit_code == 1
    out = result.output
    assert (
        "LivenessError: eventually has_leader may never hold: after 2 steps the system can go "
        "round a cycle of 5 steps forever without it"
    ) in out
    assert "cycle (5 steps, back to the start):" in out
    assert "t=1 clock advances" in out
    assert "The cycle is fair" in out


def test_eventually_holds_for_the_tie_break() -> None:
    result = simulate(
        "examples.election.scenarios:tie_break",
        "--exhaust",
        "--eventually",
        "examples.election.scenarios:has_leader",
    )
    assert result.exit_code == 0, result.output
    assert "eventually examples.election.scenarios:has_leader holds" in result.output


def test_a_sample_prints_a_replay_command_for_each_outcome_and_it_replays() -> None:
    target = "examples.racy.scenarios:lost_update"
    result = simulate(target, "--sample", "200", "--pct", "3", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "pct search INCOMPLETE (sampled 200 executions (seed 7))" in result.output
    assert "3 distinct outcome(s)" in result.output
    replays = [line for line in result.output.splitlines() if line.startswith("replay: ")]
    assert len(replays) == 3
    for line in replays:
        words = line.removeprefix("replay: pachytype simulate ").split()
        assert words[0] == target and "--pct" in words and "--pct-steps" in words
        again = simulate(*words)
        assert again.exit_code == 0, again.output
        assert "final states (seed" in again.output
    # Each replay ends in the outcome it was printed under.
    finals = {simulate(*line.split()[3:]).output.count("<stock 'shelf'>: 8") for line in replays}
    assert finals == {0, 1}


def test_a_sampled_liveness_violation_says_how_to_replay_it() -> None:
    result = simulate(
        "examples.racy.scenarios:lost_update",
        "--sample",
        "100",
        "--eventually",
        "tests.simulation.test_cli:restocked",
    )
    assert result.exit_code == 1
    assert "LivenessError: eventually restocked does not hold" in result.output
    assert "replay: pachytype simulate examples.racy.scenarios:lost_update --seed " in (
        result.output
    )


def restocked(outcome: Outcome) -> bool:
    """Both restocks counted: the racy scenario's lost update breaks it."""
    from examples.racy import refs as racy

    return outcome.get(racy.stock("shelf")) == 8


def test_workers_spread_an_exhaustive_search_and_a_sample_over_processes() -> None:
    options = ["--registry", "tests.simulation.refs", "--workers", "2"]
    exhausted = simulate("tests.simulation.test_cli:race", "--exhaust", *options)
    assert exhausted.exit_code == 0, exhausted.output
    assert "dpor, 2 processes search complete: 120 distinct outcome(s)" in exhausted.output
    sampled = simulate("tests.simulation.test_cli:race", "--sample", "50", *options)
    assert sampled.exit_code == 0, sampled.output
    assert "random, 2 processes search INCOMPLETE (sampled 50 executions" in sampled.output


def race() -> list[Envelope[Any]]:
    """Five relays racing to one log: 120 arrival orders."""
    from tests.simulation import refs

    return [refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(5)]


def test_option_mistakes_are_explained() -> None:
    both = simulate("examples.racy.scenarios:lost_update", "--exhaust", "--sample", "5")
    assert both.exit_code == 2 and "pick one" in both.output
    pct = simulate("examples.racy.scenarios:lost_update", "--exhaust", "--pct", "2")
    assert pct.exit_code == 2 and "--exhaust tries all" in pct.output
    bad = simulate("examples.racy.scenarios:lost_update", "--eventually", "nowhere")
    assert bad.exit_code == 2 and "write MODULE:FUNCTION" in bad.output
    missing = simulate(
        "examples.racy.scenarios:lost_update", "--eventually", "examples.racy.scenarios:nope"
    )
    assert missing.exit_code == 2 and "has no function 'nope'" in missing.output
