"""Simulation: how much the partial-order reduction saves, and how fast the
search goes.

* `simulation.pingpong<N>_states`, N = 2..6: N independent ping-pong pairs
  (2N entities), each rally 11 deliveries long, explored completely by
  DPOR. Value: the states (distinct worlds) it visits, 11N + 1 (linear);
  baseline: the states the sleep-set search visits, 12^N (every
  combination of the rallies' progress), measured for N <= 4 and from the
  formula beyond (N = 5 takes ~10 s and 250,000 states, N = 6 passes the
  default bound of 1,000,000 states).
* `simulation.pingpong<N>_executions`: the executions DPOR explores; baseline:
  the orders a naive search would visit, (11N)! / (11!)^N (that formula is
  checked against the naive search on a small case first).
* `simulation.pingpong3_seconds`: the time to explore the 6-entity system
  completely; baseline: the 1 s target.
* `simulation.race_seconds`: 5 relays racing to one log (120 outcomes),
  explored completely, reduced vs naive.
* `simulation.race_executions_per_s`: executions explored per second on 7
  racing relays (5,040 executions, one per outcome), reduced search; the
  note gives the naive search's rate and how long it would need.
* `simulation.run_deliveries_per_s`: a seeded run, deliveries per second.
* `simulation.{race,tally}_parallel_seconds` and `..._executions_per_s`:
  7 relays racing to a log (every order its own outcome) and 8 relays
  racing to a tally (40,320 orders, one outcome), explored completely by
  DPOR over every core (`workers=0`); baseline: one process, in the same
  run, best of 3 each, taking turns. Both explore the same executions
  (checked: executions, outcomes and executions per outcome are equal,
  and the note prints both counts); the speed-up is the inverse of the
  seconds' ratio.
* `simulation.{sample,sample_tally}_parallel_executions_per_s`: 2,000
  sampled (PCT) executions of 4 rallies and 10 relays (to a log, to a tally)
  over every core; baseline: one process.
* `simulation.stream_first_execution_states`: the states a stream
  (`explore`) has visited when its first execution comes out of the 7-relay
  race; baseline: the whole search's states (stopping early stops the search).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from benchmarks._record import Record
from pachytype import Envelope, Simulation, SimulationReport
from pachytype.simulation import Search
from pachytype.simulation._parallel import default_workers
from tests.simulation import refs
from tests.simulation.refs import REGISTRY

ROUNDS = 10
RALLY = ROUNDS + 1  # the serve, then one delivery per ball


def pairs(n: int, rounds: int = ROUNDS) -> list[Envelope[int]]:
    envelopes = []
    for i in range(n):
        a, b = refs.player(2 * i), refs.player(2 * i + 1)
        envelopes.append(a.serve(me=a, partner=b, rounds=rounds))
    return envelopes


def racers(n: int) -> list[Envelope[int]]:
    return [refs.relay(i).forward(to=refs.log("l"), value=i) for i in range(n)]


def naive_orders(n: int, length: int) -> int:
    """Interleavings of n independent sequences of `length` steps each."""
    return math.factorial(n * length) // int(math.factorial(length) ** n)


def _best(search: Callable[[], SimulationReport], repeat: int = 3) -> SimulationReport:
    return min((search() for _ in range(repeat)), key=lambda r: r.seconds)


def _pingpong(n: int, search: Search = "dpor") -> SimulationReport:
    envelopes = pairs(n)
    report = _best(lambda: Simulation(REGISTRY).exhaust(envelopes, search=search))
    assert report.complete and report.deterministic
    return report


def sleep_set_states(n: int) -> int:
    """The sleep-set search visits every combination of the rallies' progress."""
    return int((RALLY + 1) ** n)


def _check_the_formula() -> None:
    naive = Simulation(REGISTRY).exhaust(pairs(2, rounds=3), naive_search=True)
    assert naive.executions == naive_orders(2, 4), (naive.executions, naive_orders(2, 4))


def run() -> list[Record]:
    _check_the_formula()
    records = []
    searches = {n: _pingpong(n) for n in (1, 2, 3, 4, 5, 6)}
    for n in (2, 3, 4, 5, 6):
        report = searches[n]
        if n <= 4:
            before = _pingpong(n, "sleep sets")
            assert before.states == sleep_set_states(n), (n, before.states)
            how = f"measured, {before.seconds:.2f}s"
        else:
            how = "12^N"
        records.append(
            Record(
                f"simulation.pingpong{n}_states",
                report.states,
                "states",
                "sleep sets",
                sleep_set_states(n),
                f"DPOR, {2 * n} entities, {report.seconds:.4f}s; sleep sets: {how}",
            )
        )
    for n, report in searches.items():
        records.append(
            Record(
                f"simulation.pingpong{n}_executions",
                report.executions,
                "executions",
                "naive orders",
                naive_orders(n, RALLY),
                f"{2 * n} entities; {report.states:,} states, {report.seconds:.3f}s",
            )
        )
    six = searches[3]
    records.append(
        Record(
            "simulation.pingpong3_seconds",
            six.seconds,
            "s",
            "target",
            1.0,
            f"6 entities explored completely ({six.states:,} states)",
        )
    )
    reduced = _best(lambda: Simulation(REGISTRY).exhaust(racers(5)))
    naive = _best(lambda: Simulation(REGISTRY).exhaust(racers(5), naive_search=True), repeat=1)
    assert {str(f.outcome) for f in reduced.outcomes} == {str(f.outcome) for f in naive.outcomes}
    records.append(
        Record(
            "simulation.race_seconds",
            reduced.seconds,
            "s",
            "naive search",
            naive.seconds,
            f"5 relays, {len(reduced.outcomes)} outcomes; executions {reduced.executions:,} "
            f"vs {naive.executions:,}",
        )
    )
    big = _best(lambda: Simulation(REGISTRY).exhaust(racers(7)), repeat=1)
    big_naive = Simulation(REGISTRY).exhaust(racers(7), naive_search=True, max_executions=50_000)
    naive_rate = big_naive.executions / big_naive.seconds
    naive_total = math.factorial(14) // 2**7  # each relay's delivery precedes its append
    records.append(
        Record(
            "simulation.race_executions_per_s",
            big.executions / big.seconds,
            "executions/s",
            note=f"7 relays: {big.executions:,} executions, {big.states:,} states in "
            f"{big.seconds:.2f}s; naive: {naive_rate:,.0f} executions/s but "
            f"{naive_total:,} executions (~{naive_total / naive_rate / 3600:,.1f} h)",
        )
    )
    started = time.perf_counter()
    deliveries = 0
    for seed in range(20):
        result = Simulation(REGISTRY, seed=seed).run([*pairs(4, rounds=500), *racers(50)])
        deliveries += len(result.trace)
    records.append(
        Record(
            "simulation.run_deliveries_per_s",
            deliveries / (time.perf_counter() - started),
            "deliveries/s",
            note="seeded runs: 4 rallies of 500 + 50 racing relays",
        )
    )
    records.extend(_parallel())
    return records


def tallied(n: int) -> list[Envelope[int]]:
    """`n` relays racing to a tally: n! orders, one outcome (a sum)."""
    return [refs.relay(i).forward(to=refs.tally("t"), value=i) for i in range(n)]


def _parallel() -> list[Record]:
    workers = default_workers()
    records = []
    for name, workload, what in (
        ("race", racers(7), "7 relays to a log: 5,040 executions, 5,040 outcomes"),
        ("tally", tallied(8), "8 relays to a tally: 40,320 executions, 1 outcome"),
    ):
        # Best of 3 each, one process and several taking turns (load changes slowly).
        runs = [
            (
                Simulation(REGISTRY).exhaust(workload),
                Simulation(REGISTRY).exhaust(workload, workers=0),
            )
            for _ in range(3)
        ]
        one = min((a for a, _ in runs), key=lambda r: r.seconds)
        many = min((b for _, b in runs), key=lambda r: r.seconds)
        # The same search: the same executions, outcomes and executions per outcome.
        assert many.executions == one.executions, (many.executions, one.executions)
        assert [f.executions for f in many.outcomes] == [f.executions for f in one.outcomes]
        assert [str(f.outcome) for f in many.outcomes] == [str(f.outcome) for f in one.outcomes]
        counts = (
            f"{workers} processes: {many.executions:,} executions, {len(many.outcomes):,} "
            f"outcomes, {many.states:,} states; one: {one.executions:,} executions, "
            f"{len(one.outcomes):,} outcomes, {one.states:,} states"
        )
        records.append(
            Record(
                f"simulation.{name}_parallel_seconds",
                many.seconds,
                "s",
                "one process",
                one.seconds,
                f"{what}; {counts}; speed-up {one.seconds / many.seconds:.2f}x",
            )
        )
        records.append(
            Record(
                f"simulation.{name}_parallel_executions_per_s",
                many.executions / many.seconds,
                "executions/s",
                "one process",
                one.executions / one.seconds,
                f"{what}; {workers} processes, best of 3 each",
            )
        )
    for name, workload, what in (
        ("sample", [*pairs(4), *racers(10)], "4 rallies + 10 relays to a log (~1 outcome each)"),
        ("sample_tally", [*pairs(4), *tallied(10)], "4 rallies + 10 relays to a tally (1 outcome)"),
    ):
        one_s = Simulation(REGISTRY).sample(workload, executions=2000, strategy="pct")
        many_s = Simulation(REGISTRY).sample(workload, executions=2000, strategy="pct", workers=0)
        records.append(
            Record(
                f"simulation.{name}_parallel_executions_per_s",
                many_s.executions / many_s.seconds,
                "executions/s",
                "one process",
                one_s.executions / one_s.seconds,
                f"2,000 PCT executions of {what}, {workers} processes: {many_s.seconds:.2f}s vs "
                f"{one_s.seconds:.2f}s",
            )
        )
    stream = Simulation(REGISTRY).explore(racers(7))
    next(stream)
    first_states = stream.states
    stream.close()
    whole = Simulation(REGISTRY).exhaust(racers(7))
    records.append(
        Record(
            "simulation.stream_first_execution_states",
            first_states,
            "states",
            "whole search",
            whole.states,
            "7 relays: states visited when explore() yields its first execution",
        )
    )
    return records
