"""Event-sourced entities on LocalDisk, replay, read models.

* `localdisk.event_sourced`: 2,000 `EventSink` entities x 20 messages, fire
  and forget from 8 senders in batches of 500 (as `localdisk.durable`);
  activations/s until all are committed. Baseline, same run, same work: the
  state-stored `Sink`. Each event-sourced activation writes an event row
  (and every 100 events a snapshot) instead of the state row.
* `localdisk.replay_100k`: ms to rebuild one entity with 100,000 events on
  its first read after a reopen, with no snapshot (`Journal`); baseline: the
  same entity snapshotted every 1,000 events (`SnappedJournal`).
* `localdisk.projection_lag_p50/p99`: ms from a `call` to an event-sourced
  entity returning (its event committed) to that event applied by a
  `Projection` in the same process, while 8 callers write.
* `usernames.cache_*`: the usernames example's `NameCache` in a local SQLite
  file (`SqliteProjection`) over LocalDisk: 2,000 sign-ups (each a claim
  event at a shard) sent by 8 senders; writes/s until every name is in the
  cache; lag p50/p99 from a shard's commit (the signup's `follow` seeing its
  name granted) to the cache answering "taken"; then the cache is closed,
  1,000 more names are claimed, and the reopened cache catches up: ms and
  events applied (only the missed ones, not all).
* `postgres.event_sourced`, `postgres.replay_<n>`, `postgres.projection_lag_*`:
  the same three on PostgreSQL (`PACHYTYPE_TEST_DSN`; skipped without a
  server), with the node in this process (one Python process runs the
  senders, the node and the projection): `PG_ENTITIES` x `PG_PER_ENTITY`
  hits beside the state-stored `Sink`; an entity with `PG_REPLAY` events
  read by a `node=False` client (`state` rebuilds it from its journal, as a
  node taking it over does) with and without snapshots every 1,000 events;
  the projection lag while `LAG_CALLERS` callers write, and the same with
  the node in a `pachytype node` process and the callers and the projection
  in a `node=False` client (`client_projection_lag_*`). The usernames cache
  across two node processes, one killed and restarted, is measured by
  `tests/postgres/test_name_cache.py` (`pytest -s` prints its figures).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from benchmarks._record import Record
from benchmarks.bench_postgres import PARTITIONS
from benchmarks.workload import refs
from examples.usernames import refs as names
from examples.usernames.cache import NameCache
from examples.usernames.signup import UserId
from pachytype import Ecosystem, LocalDisk, Postgres, Projection, StoredEvent
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    postgres_test_dsn,
    spawn_node,
    stop_processes,
    unreachable_reason,
    wait_for_owners,
)

ENTITIES = 2_000
PER_ENTITY = 20
SENDERS = 8
BATCH = 500
REPLAY = 100_000
LAG_CALLERS = 8
LAG_CALLS = 500
SIGNUPS = 2_000
MISSED = 1_000
PG_ENTITIES = ENTITIES
PG_PER_ENTITY = PER_ENTITY
PG_REPLAY = REPLAY
T = TypeVar("T")


async def _throughput(path: Path, event_sourced: bool) -> float:
    return await _sends(LocalDisk(path, refs.REGISTRY), event_sourced, ENTITIES, PER_ENTITY)


async def _sends(eco: Ecosystem, event_sourced: bool, entities: int, each: int) -> float:
    """Activations/s of `entities` x `each` hits sent in batches by SENDERS."""
    make = refs.event_sink if event_sourced else refs.sink
    targets = [make(i) for i in range(entities)]
    batches = [
        [t.hit(n=1) for t in targets[j : j + BATCH]]
        for _ in range(each)
        for j in range(0, entities, BATCH)
    ]
    gc.freeze()
    async with eco:

        async def sender(mine: list[list[Any]]) -> None:
            for batch in mine:
                await eco.send(*batch)

        started = time.perf_counter()
        await asyncio.gather(*(sender(batches[k::SENDERS]) for k in range(SENDERS)))
        await eco.settle()
        elapsed = time.perf_counter() - started
        assert await eco.state(make(entities - 1)) == each
    gc.unfreeze()
    return entities * each / elapsed


async def _replay(path: Path, snapshots: bool) -> float:
    """ms of the first read of an entity with REPLAY events after a reopen."""
    ref = refs.snapped_journal(1) if snapshots else refs.journal(1)
    async with LocalDisk(path, refs.REGISTRY) as eco:
        for first in range(0, REPLAY, 5_000):
            await eco.send(*(ref.hit(n=1) for _ in range(first, first + 5_000)))
        await eco.settle()
    async with LocalDisk(path, refs.REGISTRY) as eco:
        started = time.perf_counter()
        state = await eco.state(ref)
        elapsed = (time.perf_counter() - started) * 1000
        assert state == REPLAY
    return elapsed


async def _lag(path: Path) -> list[float]:
    return await _lags(LocalDisk(path, refs.REGISTRY))


async def _lags(eco: Ecosystem) -> list[float]:
    """ms from each call's return to its event applied by a projection."""
    seen: dict[int, float] = {}

    def note(view: int, stored: StoredEvent[Any]) -> int:
        seen[stored.event.n] = time.perf_counter()
        return view + 1

    lags: list[float] = []
    async with eco, Projection(eco, "event_sink", apply=note, initial=0) as view:

        async def caller(k: int) -> None:
            for i in range(LAG_CALLS):
                tag = k * LAG_CALLS + i + 1  # unique n: finds its event
                await eco.call(refs.event_sink(k).hit(n=tag))
                returned = time.perf_counter()
                await view.wait_until(_applied(seen, tag), timeout=30)
                lags.append(max(0.0, seen[tag] - returned) * 1000)

        await asyncio.gather(*(caller(k) for k in range(LAG_CALLERS)))
    return lags


async def _cache(directory: Path) -> dict[str, float]:
    db, cache_db = directory / "names.db", directory / "cache.db"
    users = [UserId(f"user{i}") for i in range(SIGNUPS + MISSED)]
    lags: list[float] = []
    async with LocalDisk(db, names.REGISTRY) as eco, NameCache(eco, cache_db) as cache:
        granted: dict[str, float] = {}

        async def watch(user: UserId) -> None:
            async for state in eco.follow(names.signup(user)):
                if state.name is not None:
                    granted[state.name] = time.perf_counter()
                    return

        async def measure(user: UserId) -> None:
            name = f"name-{user}"
            await watchers[user]
            await cache.projection.wait_until(lambda _: cache.taken(name), timeout=60)
            lags.append(max(0.0, time.perf_counter() - granted[name]) * 1000)

        watchers = {u: asyncio.ensure_future(watch(u)) for u in users[:SIGNUPS]}
        started = time.perf_counter()
        sends = [names.signup(u).choose(name=f"name-{u}") for u in users[:SIGNUPS]]
        await asyncio.gather(
            *(eco.send(*sends[k::SENDERS]) for k in range(SENDERS)),
            *(measure(u) for u in users[:SIGNUPS]),
        )
        writes = SIGNUPS / (time.perf_counter() - started)
    async with LocalDisk(db, names.REGISTRY) as eco:
        await eco.send(*(names.signup(u).choose(name=f"name-{u}") for u in users[SIGNUPS:]))
        await eco.settle()
        started = time.perf_counter()
        async with NameCache(eco, cache_db) as cache:
            await cache.projection.wait_until(
                lambda _: all(cache.taken(f"name-{u}") for u in users[-1:]), timeout=60
            )
            catch_up = (time.perf_counter() - started) * 1000
            applied = cache.projection.applied
            assert all(cache.taken(f"name-{u}") for u in users)
    return {
        "writes": writes,
        "p50": statistics.median(lags),
        "p99": _percentile(lags, 0.99),
        "catch_up": catch_up,
        "applied": applied,
    }


def _on_postgres(dsn: str, work: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """`work(schema)` on a fresh schema, dropped afterwards."""
    schema = new_schema_name("pt_bench_events")
    try:
        return asyncio.run(work(schema))
    finally:
        drop_schemas(dsn, [schema])


def _pg(dsn: str, schema: str, node: bool = True) -> Postgres:
    return Postgres(dsn, refs.REGISTRY, schema=schema, partitions=PARTITIONS, node=node)


async def _pg_replay(dsn: str, schema: str, snapshots: bool) -> float:
    """ms of a client's `state` of an entity with PG_REPLAY events."""
    ref = refs.snapped_journal(1) if snapshots else refs.journal(1)
    async with _pg(dsn, schema) as eco:
        for first in range(0, PG_REPLAY, 5_000):
            await eco.send(*(ref.hit(n=1) for _ in range(first, first + 5_000)))
        await eco.settle()
    async with _pg(dsn, schema, node=False) as client:
        started = time.perf_counter()
        state = await client.state(ref)
        elapsed = (time.perf_counter() - started) * 1000
        assert state == PG_REPLAY
    return elapsed


async def _pg_remote_lags(dsn: str, schema: str) -> list[float]:
    """`_lags` with the node in a `pachytype node` process of its own and the
    callers and the projection in a `node=False` client here."""
    client = _pg(dsn, schema, node=False)
    await client.open()  # makes the schema
    await client.close()
    with tempfile.TemporaryDirectory() as logs:
        node = spawn_node(
            dsn,
            schema,
            "benchmarks.workload.refs:REGISTRY",
            node_id="bench-events",
            lease=5.0,
            partitions=PARTITIONS,
            log_dir=Path(logs),
        )
        try:
            conn = await asyncpg.connect(dsn)
            try:
                await wait_for_owners(conn, schema, {"bench-events"}, timeout=30)
            finally:
                await conn.close()
            return await _lags(_pg(dsn, schema, node=False))
        finally:
            stop_processes([node])


def _postgres(dsn: str) -> list[Record]:
    def throughput(event_sourced: bool) -> float:
        return _on_postgres(
            dsn,
            lambda s: _sends(_pg(dsn, s), event_sourced, PG_ENTITIES, PG_PER_ENTITY),
        )

    event_sourced = max(throughput(True) for _ in range(2))
    state_stored = max(throughput(False) for _ in range(2))
    no_snapshot = _on_postgres(dsn, lambda s: _pg_replay(dsn, s, False))
    snapshot = _on_postgres(dsn, lambda s: _pg_replay(dsn, s, True))
    lags = _on_postgres(dsn, lambda s: _lags(_pg(dsn, s)))
    remote = _on_postgres(dsn, lambda s: _pg_remote_lags(dsn, s))
    return [
        Record(
            "postgres.event_sourced",
            event_sourced,
            "activations/s",
            "state-stored Sink, same work",
            state_stored,
            f"{PG_ENTITIES:,} entities x {PG_PER_ENTITY} msgs, node in this process",
        ),
        Record(
            f"postgres.replay_{PG_REPLAY // 1000}k",
            no_snapshot,
            "ms",
            "snapshot every 1,000 events",
            snapshot,
            f"a client's state() of an entity with {PG_REPLAY:,} events, no snapshot",
        ),
        Record(
            "postgres.projection_lag_p50",
            statistics.median(lags),
            "ms",
            note=f"call returned -> event in a Projection, {LAG_CALLERS} callers writing",
        ),
        Record("postgres.projection_lag_p99", _percentile(lags, 0.99), "ms"),
        Record(
            "postgres.client_projection_lag_p50",
            statistics.median(remote),
            "ms",
            note="the same with the node in another process, the projection in a client",
        ),
        Record("postgres.client_projection_lag_p99", _percentile(remote, 0.99), "ms"),
    ]


def _applied(seen: dict[int, float], tag: int) -> Callable[[object], bool]:
    """Whether the event tagged `tag` reached the projection."""
    return lambda _: tag in seen


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run() -> list[Record]:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        directory = Path(tmp)
        event_sourced = max(
            asyncio.run(_throughput(directory / f"es-{i}.db", True)) for i in range(2)
        )
        state_stored = max(
            asyncio.run(_throughput(directory / f"ss-{i}.db", False)) for i in range(2)
        )
        no_snapshot = asyncio.run(_replay(directory / "replay.db", False))
        snapshot = asyncio.run(_replay(directory / "replay-snap.db", True))
        lags = asyncio.run(_lag(directory / "lag.db"))
        cache = asyncio.run(_cache(directory))
    load = f"{ENTITIES:,} entities x {PER_ENTITY} msgs, synchronous=FULL"
    dsn = postgres_test_dsn()
    reason = unreachable_reason(dsn)
    if reason is not None:
        print(f"bench_events: the postgres rows are skipped: {reason}")
    on_postgres = _postgres(dsn) if reason is None else []
    return [
        Record(
            "localdisk.event_sourced",
            event_sourced,
            "activations/s",
            "state-stored Sink, same work",
            state_stored,
            load,
        ),
        Record(
            "localdisk.replay_100k",
            no_snapshot,
            "ms",
            "snapshot every 1,000 events",
            snapshot,
            f"first read after reopen of an entity with {REPLAY:,} events, no snapshot",
        ),
        Record(
            "localdisk.projection_lag_p50",
            statistics.median(lags),
            "ms",
            note=f"call returned -> event in a Projection, {LAG_CALLERS} callers writing",
        ),
        Record("localdisk.projection_lag_p99", _percentile(lags, 0.99), "ms"),
        Record(
            "usernames.cache_writes",
            cache["writes"],
            "signups/s",
            note=f"{SIGNUPS:,} signups, each name visible in the SQLite cache",
        ),
        Record(
            "usernames.cache_lag_p50",
            cache["p50"],
            "ms",
            note="name granted (signup follower) -> cache answers taken",
        ),
        Record("usernames.cache_lag_p99", cache["p99"], "ms"),
        Record(
            "usernames.cache_catch_up",
            cache["catch_up"],
            "ms",
            note=f"reopened cache: applied {int(cache['applied']):,} missed events "
            f"({MISSED:,} claims while it was down), not {SIGNUPS + MISSED:,}",
        ),
        *on_postgres,
    ]
