"""`pachytype simulate MODULE:SCENARIO`: run a scenario in the simulation,
explore every delivery order with `--exhaust`, or sample many orders with
`--sample N` (uniformly or by PCT, each execution replayable from its seed),
over several processes with `--workers`, checking a liveness property with
`--eventually`; print the outcomes and traces.

A scenario is a function taking no arguments and returning the envelopes to
send; a property (`--eventually MODULE:FUNCTION`) takes an `Outcome` and
returns whether the good thing has happened. The registry is `--registry
MODULE:NAME`, else the scenario module's `REGISTRY`, else `REGISTRY` in the
`refs` module beside it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pachytype._address import Envelope
from pachytype._errors import PachytypeError
from pachytype._registry import Registry
from pachytype.simulation import Faults, Found, Outcome, Simulation, SimulationReport, Trace
from pachytype.simulation._explore import Progress as ProgressCallback
from pachytype.simulation._liveness import Property, check_terminal


@click.command()
@click.argument("target", metavar="MODULE:SCENARIO")
@click.option("--exhaust", is_flag=True, help="Explore every delivery order.")
@click.option(
    "--sample",
    "samples",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run N executions in sampled orders (spaces too large to exhaust); "
    "each replays from the seed printed with it.",
)
@click.option(
    "--pct",
    "pct_depth",
    type=click.IntRange(min=1),
    metavar="DEPTH",
    help="Order deliveries by PCT with DEPTH - 1 priority changes (finds bugs needing up "
    "to DEPTH ordering constraints), in a single run or with --sample; default: "
    "uniformly at random.",
)
@click.option(
    "--pct-steps",
    type=click.IntRange(min=1),
    help="Steps among which PCT changes priorities (default: 100 for a single run, a "
    "typical run's length with --sample).",
)
@click.option(
    "--fault-rate",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Chance that a delivery becomes a fault while budget remains (single run, --sample).",
)
@click.option(
    "--eventually",
    "eventually_target",
    metavar="MODULE:FUNCTION",
    help="A liveness property (Outcome -> bool): it must hold where every execution "
    "ends and, with --exhaust, no fair cycle of worlds may avoid it forever.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Processes for --exhaust or --sample (0: one per core).",
)
@click.option(
    "--faults",
    "faults_text",
    default="",
    metavar="drop[=N],duplicate[=N],reorder",
    help="Faults to inject (comma-separated; budgets default to 1).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of a single run or a sample.")
@click.option("--registry", "registry_target", metavar="MODULE:NAME", help="The registry.")
@click.option("--max-depth", default=10_000, show_default=True, help="Steps per execution.")
@click.option("--max-executions", default=1_000_000, show_default=True, help="Search bound.")
@click.option("--max-states", default=1_000_000, show_default=True, help="Worlds kept (memory).")
@click.option("--traces", default=3, show_default=True, help="Outcome traces to print.")
@click.option(
    "--check-deterministic",
    is_flag=True,
    help="With --exhaust: exit 1 unless the search is complete with exactly one outcome.",
)
def simulate(
    target: str,
    exhaust: bool,
    samples: int | None,
    pct_depth: int | None,
    pct_steps: int | None,
    fault_rate: float,
    eventually_target: str | None,
    workers: int,
    faults_text: str,
    seed: int,
    registry_target: str | None,
    max_depth: int,
    max_executions: int,
    max_states: int,
    traces: int,
    check_deterministic: bool,
) -> None:
    """Simulate MODULE:SCENARIO, a function returning the envelopes to send.

    \b
    pachytype simulate examples.racy.scenarios:lost_update --exhaust
    pachytype simulate examples.tcp.scenarios:naive --exhaust --faults reorder
    pachytype simulate examples.election.scenarios:polite --exhaust \
        --eventually examples.election.scenarios:has_leader
    pachytype simulate examples.racy.scenarios:lost_update --sample 1000 --pct 3 --workers 0
    """
    console = Console(highlight=False)
    try:
        faults = Faults.parse(faults_text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--faults") from None
    if exhaust and samples is not None:
        raise click.UsageError("--exhaust explores every order, --sample N some: pick one")
    if exhaust and (pct_depth is not None or pct_steps is not None):
        raise click.UsageError("--pct orders a single run or a --sample; --exhaust tries all")
    envelopes, registry = _load(target, registry_target)
    prop = None if eventually_target is None else _property(eventually_target)
    sim = Simulation(registry, seed=seed)
    try:
        if exhaust:
            with _progress(console) as progress:
                report = sim.exhaust(
                    envelopes,
                    faults=faults,
                    max_depth=max_depth,
                    max_executions=max_executions,
                    max_states=max_states,
                    progress=progress,
                    workers=workers,
                    eventually=prop,
                )
            _print_report(console, report, traces)
            if prop is not None:
                console.print(f"[green]eventually {eventually_target} holds[/]")
            if check_deterministic and not (report.complete and report.deterministic):
                sys.exit(1)
        elif samples is not None:
            report = sim.sample(
                envelopes,
                executions=samples,
                strategy="random" if pct_depth is None else "pct",
                depth=pct_depth or 3,
                pct_steps=pct_steps,
                faults=faults,
                fault_rate=fault_rate,
                max_deliveries=max_depth,
                workers=workers,
            )

            def replay(found: Found) -> str:
                return _replay_command(target, registry_target, found, report, faults, fault_rate)

            if prop is not None:
                check_terminal(report, prop, note=replay)
            _print_report(console, report, traces, replay)
            if prop is not None:
                console.print(f"[green]eventually {eventually_target} holds[/] (sampled)")
        else:
            result = sim.run(
                envelopes,
                faults=faults,
                max_deliveries=max_depth,
                fault_rate=fault_rate,
                pct=pct_depth,
                pct_steps=pct_steps or 100,
            )
            how = "" if pct_depth is None else f", pct {pct_depth}"
            title = f"final states (seed {seed}{how}, faults: {faults})"
            console.print(_states_table(title, [result.outcome]))
            _print_trace(console, "trace", result.trace)
            if prop is not None:
                check_terminal(
                    SimulationReport(
                        outcomes=(Found(result.outcome, result.trace, 1),),
                        executions=1,
                        states=0,
                        deliveries=len(result.trace),
                        dead_letters=len(result.dead_letters),
                        complete=False,
                        limit="one run",
                        faults=faults,
                        seconds=0.0,
                    ),
                    prop,
                )
    except PachytypeError as error:
        console.print(f"[bold red]{type(error).__name__}[/]: ", end="")
        console.print(str(error), markup=False, soft_wrap=True)
        for note in getattr(error, "__notes__", ()):
            console.print(note, markup=False, soft_wrap=True)
        sys.exit(1)


def _replay_command(
    target: str,
    registry_target: str | None,
    found: Found,
    report: SimulationReport,
    faults: Faults,
    fault_rate: float,
) -> str:
    """The command that runs one sampled execution again, step for step."""
    words = ["pachytype simulate", target]
    if registry_target is not None:
        words.append(f"--registry {registry_target}")
    words.append(f"--seed {found.seed}")
    if report.pct_depth is not None:
        words.append(f"--pct {report.pct_depth} --pct-steps {report.pct_steps}")
    if faults != Faults():
        words.append(f"--faults {faults} --fault-rate {fault_rate}")
    return "replay: " + " ".join(words)


def _property(target: str) -> Property:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            f"{target!r}: write MODULE:FUNCTION, e.g. examples.election.scenarios:has_leader",
            param_hint="--eventually",
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise click.BadParameter(
            f"{module_name} has no function {attribute!r}", param_hint="--eventually"
        )
    prop: Property = function
    return prop


def _load(target: str, registry_target: str | None) -> tuple[list[Envelope[Any]], Registry]:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            f"{target!r}: write MODULE:SCENARIO, e.g. examples.racy.scenarios:lost_update",
            param_hint="MODULE:SCENARIO",
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # scenarios usually live in the project being run
    module = importlib.import_module(module_name)
    scenario = getattr(module, attribute, None)
    if not callable(scenario):
        raise click.BadParameter(
            f"{module_name} has no function {attribute!r}", param_hint="MODULE:SCENARIO"
        )
    envelopes = list(scenario())
    for envelope in envelopes:
        if not isinstance(envelope, Envelope):
            raise click.BadParameter(
                f"{target} returned {envelope!r}; a scenario returns envelopes built by refs",
                param_hint="MODULE:SCENARIO",
            )
    return envelopes, _registry(module_name, module, registry_target)


def _registry(module_name: str, module: object, registry_target: str | None) -> Registry:
    candidates: list[tuple[str, str]] = []
    if registry_target is not None:
        name, _, attribute = registry_target.partition(":")
        candidates.append((name, attribute or "REGISTRY"))
    else:
        candidates.append((module_name, "REGISTRY"))
        package = module_name.rpartition(".")[0]
        candidates.append((f"{package}.refs" if package else "refs", "REGISTRY"))
    for name, attribute in candidates:
        try:
            value = getattr(importlib.import_module(name), attribute, None)
        except ModuleNotFoundError:
            continue
        if isinstance(value, Registry):
            return value
    tried = ", ".join(f"{n}:{a}" for n, a in candidates)
    raise click.BadParameter(
        f"no registry found (tried {tried}); pass --registry MODULE:NAME",
        param_hint="--registry",
    )


@contextmanager
def _progress(console: Console) -> Iterator[ProgressCallback]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("exploring", total=None)

        def update(states: int, executions: int) -> None:
            bar.update(task, description=f"{states:,} states, {executions:,} executions")

        yield update


def _print_report(
    console: Console,
    report: SimulationReport,
    traces: int,
    replay: Callable[[Found], str] | None = None,
) -> None:
    console.print(report.summary())
    verdict = "deterministic" if report.deterministic else "NOT deterministic"
    if not report.complete:
        verdict += " so far (incomplete search)"
    style = "green" if report.deterministic else "bold red"
    console.print(f"[{style}]{verdict}[/]: {len(report.outcomes)} distinct outcome(s)")
    console.print(_outcomes_table(report))
    for n, found in enumerate(report.outcomes[:traces], 1):
        _print_trace(console, f"shortest trace to outcome {n}", found.trace)
        if replay is not None:
            console.print(replay(found), markup=False, soft_wrap=True)
    if len(report.outcomes) > traces:
        console.print(f"({len(report.outcomes) - traces} more; --traces N to print more)")


def _outcomes_table(report: SimulationReport) -> Table:
    """One row per outcome, showing only the entities whose states differ."""
    outcomes = [f.outcome for f in report.outcomes]
    everyone = {a for o in outcomes for a in o.states}
    differ = [a for a in everyone if len({o.describe(a) for o in outcomes}) > 1]
    shown = sorted(differ or everyone, key=repr)
    title = "outcomes" if len(shown) == len(everyone) else "outcomes (entities that differ)"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("final states")
    table.add_column("executions", justify="right")
    table.add_column("steps", justify="right")
    for n, found in enumerate(report.outcomes, 1):
        states = "\n".join(f"{a!r}: {found.outcome.describe(a)}" for a in shown)
        table.add_row(str(n), states, f"{found.executions:,}", str(len(found.trace)))
    if len(shown) < len(everyone):
        same = ", ".join(repr(a) for a in sorted(everyone - set(shown), key=repr))
        table.caption = f"the same in every outcome: {same}"
    return table


def _states_table(title: str, outcomes: list[Outcome]) -> Table:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("final states")
    for n, outcome in enumerate(outcomes, 1):
        table.add_row(str(n), _states(outcome))
    return table


def _states(outcome: Outcome) -> str:
    return "\n".join(f"{a!r}: {outcome.describe(a)}" for a in outcome.states) or "(none)"


def _print_trace(console: Console, title: str, trace: Trace) -> None:
    console.print(f"[bold]{title}[/] ({len(trace)} steps)")
    console.print(trace.render(), markup=False, soft_wrap=True)
