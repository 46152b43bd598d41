"""Postgres: durable activations/s with one and two node processes, beside raw
asyncpg doing the same writes, and the takeover time after kill -9.

* `postgres.durable.1node` / `.2nodes`: `ENTITIES` sinks x `PER_ENTITY`
  hits are put in the mailbox first (untimed), then `pachytype node`
  processes drain it; activations/s from the first committed batch to an
  empty mailbox (the first batch, <= 1% of the mail, counts as free);
  best of `REPEAT` runs.
  Each activation: claim the row, decode, activate, encode, upsert the
  state, delete the row, record the dedupe id, all committed.
* Baselines, on the same tables and the same preloaded mail, one asyncpg
  connection: `raw.1pertx` claims one row per transaction (`FOR UPDATE
  SKIP LOCKED`), upserts a state, deletes the row and records the dedupe
  id; `raw.100pertx` does the same 100 rows per transaction with array
  statements. No decoding, no Python activation: the database's share.
* `postgres.call`: milliseconds per sequential `call` to one entity whose
  node runs in the caller's process (send committed, activation committed).
* `postgres.takeover`: two nodes with the default 5 s lease; seconds from
  kill -9 of one until the other owns every partition.

Needs PostgreSQL at `PACHYTYPE_TEST_DSN` (default
postgresql://postgres@127.0.0.1:5432/test); without it, records nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from benchmarks._record import Record
from benchmarks.workload import refs
from pachytype import Postgres
from pachytype._pg_schema import quote_schema
from pachytype._pg_testing import (
    drop_schemas,
    new_schema_name,
    postgres_test_dsn,
    spawn_node,
    stop_processes,
    unreachable_reason,
    wait_for_owners,
)

ENTITIES = 10_000
PER_ENTITY = 20
PARTITIONS = 32
RAW_SINGLE = 5_000
REPEAT = 2
CALLS = 300
"""Durable runs per figure, best kept (the machine may be busy with other work)."""
REGISTRY = "benchmarks.workload.refs:REGISTRY"


async def _preload(dsn: str, schema: str) -> None:
    """Create the schema and fill the mailbox (a client, no node)."""
    async with Postgres(
        dsn, refs.REGISTRY, schema=schema, node=False, partitions=PARTITIONS
    ) as eco:
        sinks = [refs.sink(i) for i in range(ENTITIES)]
        for _ in range(PER_ENTITY):
            await eco.send(*(s.hit(n=1) for s in sinks))


async def _started(conn: asyncpg.Connection, schema: str) -> bool:
    """Whether a first batch committed (cheap: no count over the mailbox)."""
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {quote_schema(schema)}.states)"
    )
    return found


async def _drained(conn: asyncpg.Connection, schema: str) -> bool:
    """Whether the mailbox is empty (an index probe, not a scan)."""
    found: bool = await conn.fetchval(
        f"SELECT NOT EXISTS (SELECT 1 FROM {quote_schema(schema)}.mailbox "
        f"ORDER BY partition, seq LIMIT 1)"
    )
    return found


async def _durable(dsn: str, nodes: int, logs: Path) -> float:
    schema = new_schema_name("pt_bench")
    total = ENTITIES * PER_ENTITY
    try:
        await _preload(dsn, schema)
        conn = await asyncpg.connect(dsn)
        procs = [
            spawn_node(
                dsn,
                schema,
                REGISTRY,
                node_id=f"bench{i}",
                lease=5.0,
                partitions=PARTITIONS,
                log_dir=logs,
            )
            for i in range(nodes)
        ]
        try:
            while not await _started(conn, schema):
                await asyncio.sleep(0.002)
            started = time.perf_counter()
            while not await _drained(conn, schema):
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False) as eco:
                assert await eco.state(refs.sink(ENTITIES - 1)) == PER_ENTITY
        finally:
            stop_processes(procs, grace=20)
            await conn.close()
        return total / elapsed
    finally:
        drop_schemas(dsn, [schema])


async def _raw(dsn: str, per_tx: int, rows: int) -> float:
    """Raw asyncpg: claim, upsert state, delete, dedupe; `per_tx` rows per transaction."""
    schema = new_schema_name("pt_raw")
    s = quote_schema(schema)
    try:
        await _preload(dsn, schema)
        conn = await asyncpg.connect(dsn)
        try:
            done = 0
            started = time.perf_counter()
            while done < rows:
                async with conn.transaction():
                    claimed = await conn.fetch(
                        f"SELECT ctid, msg_id, partition, entity_type, entity_id "
                        f"FROM {s}.mailbox ORDER BY partition, seq LIMIT $1 "
                        f"FOR UPDATE SKIP LOCKED",
                        per_tx,
                    )
                    last = {(r[3], r[4]): r[2] for r in claimed}
                    await conn.execute(
                        f"INSERT INTO {s}.states "
                        f"(entity_type, entity_id, partition, version, data, activations) "
                        f"SELECT t, e, p, 1, '1'::bytea, 1 "
                        f"FROM unnest($1::text[], $2::text[], $3::int[]) AS u(t, e, p) "
                        f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
                        f"data = excluded.data, activations = {s}.states.activations + 1",
                        [k[0] for k in last],
                        [k[1] for k in last],
                        list(last.values()),
                    )
                    await conn.execute(
                        f"DELETE FROM {s}.mailbox WHERE ctid = ANY($1::tid[])",
                        [r[0] for r in claimed],
                    )
                    await conn.execute(
                        f"INSERT INTO {s}.dedupe (msg_id) SELECT unnest($1::uuid[])",
                        [r[1] for r in claimed],
                    )
                done += len(claimed)
            elapsed = time.perf_counter() - started
        finally:
            await conn.close()
        return done / elapsed
    finally:
        drop_schemas(dsn, [schema])


async def _takeover(dsn: str, logs: Path) -> float:
    schema = new_schema_name("pt_takeover")
    lease = 5.0
    procs = {
        n: spawn_node(
            dsn, schema, REGISTRY, node_id=n, lease=lease, partitions=PARTITIONS, log_dir=logs
        )
        for n in ("t1", "t2")
    }
    conn = await asyncpg.connect(dsn)
    try:
        while not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.leases"):
            await asyncio.sleep(0.02)
        await wait_for_owners(conn, schema, {"t1", "t2"}, 30)
        os.kill(procs["t2"].pid, signal.SIGKILL)
        return await wait_for_owners(conn, schema, {"t1"}, 30)
    finally:
        stop_processes(list(procs.values()), grace=20)
        await conn.close()
        drop_schemas(dsn, [schema])


async def _call_latency(dsn: str) -> float:
    """Milliseconds per sequential `call` to one entity owned by this process."""
    schema = new_schema_name("pt_call")
    try:
        async with Postgres(dsn, refs.REGISTRY, schema=schema, partitions=PARTITIONS) as eco:
            for _ in range(20):  # warm up: connections, caches
                await eco.call(refs.sink(0).hit(n=1))
            started = time.perf_counter()
            for _ in range(CALLS):
                await eco.call(refs.sink(0).hit(n=1))
            return (time.perf_counter() - started) / CALLS * 1000
    finally:
        drop_schemas(dsn, [schema])


async def _all(dsn: str, logs: Path) -> list[Record]:
    raw_single = await _raw(dsn, 1, RAW_SINGLE)
    raw_batched = await _raw(dsn, 100, ENTITIES * PER_ENTITY)
    one = max([await _durable(dsn, 1, logs) for _ in range(REPEAT)])
    two = max([await _durable(dsn, 2, logs) for _ in range(REPEAT)])
    takeover = await _takeover(dsn, logs)
    call = await _call_latency(dsn)
    note = f"{ENTITIES:,} sinks x {PER_ENTITY} hits, {PARTITIONS} partitions, node processes"
    return [
        Record("postgres.raw.1pertx", raw_single, "activations/s", note="asyncpg, same writes"),
        Record("postgres.raw.100pertx", raw_batched, "activations/s", note="asyncpg, same writes"),
        Record(
            "postgres.durable.1node",
            one,
            "activations/s",
            "postgres.raw.100pertx",
            raw_batched,
            note=note,
        ),
        Record(
            "postgres.durable.2nodes",
            two,
            "activations/s",
            "postgres.raw.100pertx",
            raw_batched,
            note=note + "; target >= 40,000/s and >= 0.5x",
        ),
        Record(
            "postgres.call",
            call,
            "ms",
            note="sequential calls to one entity; two commits each (the send, the activation)",
        ),
        Record(
            "postgres.takeover",
            takeover,
            "s",
            "lease + 1 s",
            6.0,
            note="kill -9 of one of two nodes, default 5 s lease",
        ),
    ]


def run() -> list[Record]:
    dsn = postgres_test_dsn()
    reason = unreachable_reason(dsn)
    if reason is not None:
        print(f"bench_postgres skipped: {reason}")
        return []
    with tempfile.TemporaryDirectory() as logs:
        return asyncio.run(_all(dsn, Path(logs)))
