"""Simulation: how much the partial-order reduction saves, and how fast the
search goes.

* `simulation.pingpong<N>_executions`: N independent ping-pong pairs (2N
  entities), each rally 11 deliveries long, explored completely. Value: the
  executions the reduced search explores; baseline: the orders a naive
  search would visit, (11N)! / (11!)^N (that formula is checked against the
  naive search on a small case first).
* `simulation.pingpong3_seconds`: the time to explore the 6-entity system
  completely; baseline: the 1 s target.
* `simulation.race_seconds`: 5 relays racing to one log (120 outcomes),
  explored completely, reduced vs naive.
* `simulation.race_executions_per_s`: executions explored per second on 7
  racing relays (5,040 executions, one per outcome), reduced search; the
  note gives the naive search's rate and how long it would need.
* `simulation.run_deliveries_per_s`: a seeded run, deliveries per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from benchmarks._record import Record
from pachytype import Envelope, Simulation, SimulationReport
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


def _pingpong(n: int) -> SimulationReport:
    envelopes = pairs(n)
    report = _best(lambda: Simulation(REGISTRY).exhaust(envelopes))
    assert report.complete and report.deterministic
    return report


def _check_the_formula() -> None:
    naive = Simulation(REGISTRY).exhaust(pairs(2, rounds=3), naive_search=True)
    assert naive.executions == naive_orders(2, 4), (naive.executions, naive_orders(2, 4))


def run() -> list[Record]:
    _check_the_formula()
    records = []
    searches = {n: _pingpong(n) for n in (1, 2, 3, 4)}
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
    return records
