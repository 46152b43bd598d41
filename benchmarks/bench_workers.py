"""Worker round trips beside plain calls, on LocalDisk and Postgres, same run.

* `<eco>.worker_round_trip`: REQUESTS `Ping` requests sent at once to the
  `Echo` worker (whose `perform` returns at once), each answered to a
  `Tally` entity: requests/s from the send until the tally has them all.
  A round trip is: the request's activation of the worker entity, a claim
  (a `call`), the perform, the `WorkDone` activation that forwards the
  result, the result's activation. Claims take many requests at a time.
* Baseline `<eco> sequential call`: `call`s to the tally, one after the
  other, in the same ecosystem (calls/s).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks._record import Record
from benchmarks.echo import refs
from pachytype import Ecosystem, LocalDisk, Postgres
from pachytype._postgres.testing import drop_schemas, new_schema_name, postgres_test_dsn

REQUESTS = 500
CALLS = 500


async def _measure(eco: Ecosystem) -> tuple[float, float]:
    """(round trips/s, sequential calls/s)."""
    tally = refs.tally(0)
    started = time.perf_counter()
    await eco.send(*(refs.echo().ping(n=i, reply_to=tally) for i in range(REQUESTS)))
    async for count in eco.follow(tally):
        if count >= REQUESTS:
            break
    round_trips = REQUESTS / (time.perf_counter() - started)
    other = refs.tally(1)
    started = time.perf_counter()
    for n in range(CALLS):
        await eco.call(other.pong(n=n))
    calls = CALLS / (time.perf_counter() - started)
    return round_trips, calls


def _records(eco: str, round_trips: float, calls: float) -> list[Record]:
    return [
        Record(
            f"{eco}.worker_round_trip",
            round_trips,
            "requests/s",
            f"{eco} sequential call",
            calls,
            f"{REQUESTS} requests at once to a no-op worker, results to one entity",
        )
    ]


def run() -> list[Record]:
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as directory:
        records += _records(
            "localdisk",
            *asyncio.run(_measure_on(LocalDisk(Path(directory) / "w.db", refs.REGISTRY))),
        )
    dsn = postgres_test_dsn()
    schema = new_schema_name("pt_bench")
    try:
        eco = Postgres(dsn, refs.REGISTRY, schema=schema, lease=timedelta(seconds=5))
        records += _records("postgres", *asyncio.run(_measure_on(eco)))
    except OSError as error:
        print(f"postgres skipped: {error}")
    finally:
        drop_schemas(dsn, [schema])
    return records


async def _measure_on(eco: Ecosystem) -> tuple[float, float]:
    async with eco:
        return await _measure(eco)
