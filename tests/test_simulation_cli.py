"""`pachytype simulate MODULE:SCENARIO [--exhaust] [--faults ...]`."""

from __future__ import annotations

from click.testing import CliRunner, Result

from pachytype.cli import main


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
    result = simulate("tests.test_simulation_cli:overflow", "--registry", "tests.simulation.refs")
    assert result.exit_code == 1
    assert "SimulationError: entity 'total' (id 't') raised ValueError" in result.output
    assert "    2. Add(n=60)   <- raised here" in result.output


def overflow() -> list[object]:
    """A scenario whose second message makes `Total` raise."""
    from tests.simulation import refs

    return [refs.total("t").add(n=60), refs.total("t").add(n=60)]
