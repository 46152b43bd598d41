"""Postgres: durable activations/s with one and two node processes, beside raw
asyncpg doing the same writes, and the takeover time after kill -9.

* `postgres.durable.1node` / `.2nodes`: `ENTITIES` sinks x `PER_ENTITY`
  hits are put in the mailbox first (untimed), then `pachytype node`
  processes drain it; activations/s from the first committed batch to an
  empty mailbox (the first batch, <= 1% of the mail, counts as free);
  best of `REPEAT` runs. `postgres.durable.1node.2workers`: the same drain
  by a node with `MORE_WORKERS` activation loops (commits side by side).
  Each activation: claim the row, decode, activate, encode, upsert the
  state, delete the row, record the dedupe id, all committed.
* Baselines, on the same tables and the same preloaded mail, with as many
  asyncpg connections as the node workers they are compared with
  (`WORKERS` per node): `raw.1pertx` claims one row per transaction (`FOR
  UPDATE SKIP LOCKED`), upserts a state, deletes the row and records the
  dedupe id; `raw.100pertx.<n>conn` does the same 100 rows per transaction
  with array statements. No decoding, no Python activation: the
  database's share.
* `postgres.call`: milliseconds per sequential `call` to one entity whose
  node runs in the caller's process (send committed, activation committed).
* `postgres.client.calls`: what a web service sees. One `pachytype node`
  process; this process is a `node=False` client with `IN_FLIGHT` calls at
  once over `CLIENT_KEYS` sinks for `CLIENT_SECONDS` (calls/s; p50 and p99
  in the note). `postgres.client.call_p50`: one key called in sequence
  (median ms). `postgres.client.calls.2workers`: the calls to a node with
  `MORE_WORKERS` loops (smaller transactions: more work per call).
  Baseline `postgres.raw.calls`: a hand-written asyncpg counter service
  (one upsert transaction per call, a request-id insert for idempotence)
  on as many connections as client and node used.
* `postgres.client.cpu_per_call`: microseconds of CPU a call costs, summed
  over the client process, the node process and their database backends
  (/proc times over the in-flight phase), beside the baseline's (its
  process and its backends): on a machine they share, calls/s is bounded
  by the cores over this.
* `postgres.takeover`: two nodes with the default 5 s lease; seconds from
  kill -9 of one until the other owns every partition.

Needs PostgreSQL at `PACHYTYPE_TEST_DSN` (default
postgresql://postgres@127.0.0.1:5432/test); without it, records nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from benchmarks._record import Record
from benchmarks.workload import refs
from pachytype import Postgres
from pachytype._postgres.schema import quote_schema
from pachytype._postgres.testing import (
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
"""Durable runs per figure, best kept (the machine may be busy with other work)."""
CALLS = 300
WORKERS = 1
"""Activation loops per node process (`pachytype node --workers`, its default).
Two rows run `MORE_WORKERS` too: the drain and the client calls."""
MORE_WORKERS = 2
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


async def _durable(dsn: str, nodes: int, logs: Path, workers: int = WORKERS) -> float:
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
                workers=workers,
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


async def _raw(dsn: str, per_tx: int, rows: int, connections: int) -> float:
    """Raw asyncpg: claim, upsert state, delete, dedupe; `per_tx` rows per
    transaction, on `connections` connections at once (as many as the node
    workers it is compared with)."""
    schema = new_schema_name("pt_raw")
    s = quote_schema(schema)
    try:
        await _preload(dsn, schema)
        conns = [await asyncpg.connect(dsn) for _ in range(connections)]
        done = 0

        async def drain(conn: asyncpg.Connection) -> None:
            nonlocal done
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
                if not claimed:
                    return
                done += len(claimed)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(drain(c) for c in conns))
            elapsed = time.perf_counter() - started
        finally:
            for c in conns:
                await c.close()
        return done / elapsed
    finally:
        drop_schemas(dsn, [schema])


async def _raw_calls(dsn: str, connections: int) -> dict[str, float]:
    """A hand-written asyncpg counter service, the baseline of the client
    figures: each call is one transaction (upsert the counter, record the
    request id, return the count) on a pool of `connections` (without the
    reset query asyncpg sends by default, as pachytype's pools); `IN_FLIGHT`
    calls at once over `CLIENT_KEYS` keys, then one key in sequence."""
    schema = new_schema_name("pt_rawcall")
    s = quote_schema(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=connections,
        max_size=connections,
        server_settings={"application_name": f"pachytype {schema} raw"},
        # As pachytype's pools: no session state changes, so asyncpg's reset
        # query (a round trip each time a connection goes back) is skipped.
        reset=_no_reset,
    )
    try:
        await pool.execute(f"CREATE SCHEMA {s}")
        await pool.execute(f"CREATE TABLE {s}.counters (k text PRIMARY KEY, n bigint NOT NULL)")
        await pool.execute(f"CREATE TABLE {s}.requests (id uuid PRIMARY KEY)")
        query = (
            f"WITH r AS (INSERT INTO {s}.requests (id) VALUES ($2)) "
            f"INSERT INTO {s}.counters (k, n) VALUES ($1, 1) "
            f"ON CONFLICT (k) DO UPDATE SET n = {s}.counters.n + 1 RETURNING n"
        )

        async def call(key: int) -> None:
            await pool.fetchval(query, str(key), uuid.uuid4())

        latencies: list[float] = []
        stop = time.perf_counter() + CLIENT_SECONDS
        rng = random.Random(7)

        async def caller() -> None:
            while (now := time.perf_counter()) < stop:
                await call(rng.randrange(CLIENT_KEYS))
                latencies.append(time.perf_counter() - now)

        backends = await _backends(dsn, schema)
        cpu = _cpu([], backends)
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - started
        cpu = _cpu([], backends) - cpu
        sequential: list[float] = []
        for i in range(SEQUENTIAL + 20):
            now = time.perf_counter()
            await call(0)
            if i >= 20:
                sequential.append(time.perf_counter() - now)
        return {
            "calls": len(latencies) / elapsed,
            "p50": _p(latencies, 0.5),
            "p99": _p(latencies, 0.99),
            "seq_p50": _p(sequential, 0.5),
            "cpu_us": cpu / len(latencies) * 1e6,
        }
    finally:
        await pool.close()
        drop_schemas(dsn, [schema])


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """A pool's reset that sends nothing (the baseline changes no session state)."""


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


CLIENT_KEYS = 1_000
IN_FLIGHT = 32
CLIENT_SECONDS = 5.0
SEQUENTIAL = 500


async def _serving(
    dsn: str, logs: Path, workers: int = WORKERS
) -> tuple[str, subprocess.Popen[bytes]]:
    """One `pachytype node` process owning every partition of a fresh schema."""
    schema = new_schema_name("pt_client")
    proc = spawn_node(
        dsn,
        schema,
        REGISTRY,
        node_id="server",
        lease=5.0,
        partitions=PARTITIONS,
        log_dir=logs,
        workers=workers,
    )
    conn = await asyncpg.connect(dsn)
    try:
        while not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.leases"):
            await asyncio.sleep(0.02)
        await wait_for_owners(conn, schema, {"server"}, 30)
    finally:
        await conn.close()
    return schema, proc


def _p(latencies: list[float], q: float) -> float:
    """The `q` quantile of `latencies` (seconds), in milliseconds."""
    return statistics.quantiles(latencies, n=1000)[int(q * 1000) - 1] * 1000


async def _backends(dsn: str, schema: str, node_id: str = "%") -> list[int]:
    """Server process ids of the connections of `schema`'s processes (of the
    one named `node_id` only, if given: its pool's and its listener's)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 "
            "OR application_name LIKE $2",
            f"pachytype {schema} {node_id}",
            f"pachytype {schema} listen {node_id}",
        )
        return [int(r[0]) for r in rows]
    finally:
        await conn.close()


def _cpu(pids: list[int], backends: list[int]) -> float:
    """CPU seconds used so far by this process, `pids` and `backends` (from
    /proc: what a call costs, summed over client, node and database)."""
    return _own_cpu() + _proc_cpu([*pids, *backends])


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _proc_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes `pids` (/proc/PID/stat)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cpu_parts(node: int, backends: list[int], node_backends: list[int]) -> dict[str, float]:
    """CPU seconds used so far, split: this (client) process, the node
    process, the node's database backends and the client's."""
    return {
        "client": _own_cpu(),
        "node": _proc_cpu([node]),
        "node_db": _proc_cpu(node_backends),
        "client_db": _proc_cpu([b for b in backends if b not in node_backends]),
    }


async def _connections(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            f"pachytype {schema} %",
        )
        return n
    finally:
        await conn.close()


async def client_calls(dsn: str, logs: Path, workers: int = WORKERS) -> dict[str, float]:
    """From a `node=False` client in this process to one node process:
    `IN_FLIGHT` concurrent calls over `CLIENT_KEYS` sinks for
    `CLIENT_SECONDS` (calls/s, p50, p99 in ms), then one key called in
    sequence (p50, p99 ms), and the connections both processes used."""
    schema, proc = await _serving(dsn, logs, workers)
    try:
        async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False) as eco:
            await asyncio.gather(*(eco.call(refs.sink(k).hit(n=1)) for k in range(CLIENT_KEYS)))
            latencies: list[float] = []
            stop = time.perf_counter() + CLIENT_SECONDS
            rng = random.Random(7)

            async def caller() -> None:
                while (now := time.perf_counter()) < stop:
                    await eco.call(refs.sink(rng.randrange(CLIENT_KEYS)).hit(n=1))
                    latencies.append(time.perf_counter() - now)

            backends = await _backends(dsn, schema)
            node_backends = await _backends(dsn, schema, "server")
            before = _cpu_parts(proc.pid, backends, node_backends)
            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
            elapsed = time.perf_counter() - started
            after = _cpu_parts(proc.pid, backends, node_backends)
            parts = {k: (after[k] - before[k]) / len(latencies) * 1e6 for k in after}
            connections = await _connections(dsn, schema)
            sequential: list[float] = []
            for i in range(SEQUENTIAL + 20):
                now = time.perf_counter()
                await eco.call(refs.sink(0).hit(n=1))
                if i >= 20:  # after warming up
                    sequential.append(time.perf_counter() - now)
        return {
            "calls": len(latencies) / elapsed,
            "p50": _p(latencies, 0.5),
            "p99": _p(latencies, 0.99),
            "seq_p50": _p(sequential, 0.5),
            "seq_p99": _p(sequential, 0.99),
            "connections": connections,
            "cpu_us": sum(parts.values()),
            **{f"cpu_{k}": v for k, v in parts.items()},
        }
    finally:
        stop_processes([proc], grace=20)
        drop_schemas(dsn, [schema])


async def _all(dsn: str, logs: Path) -> list[Record]:
    # Node workers each hold one connection while they drain: the raw
    # baselines get as many (WORKERS per node) for a fair ratio.
    raw_single = await _raw(dsn, 1, RAW_SINGLE, WORKERS)
    raw_one = await _raw(dsn, 100, ENTITIES * PER_ENTITY, WORKERS)
    raw_two = await _raw(dsn, 100, ENTITIES * PER_ENTITY, 2 * WORKERS)
    one = max([await _durable(dsn, 1, logs) for _ in range(REPEAT)])
    one_more = max([await _durable(dsn, 1, logs, MORE_WORKERS) for _ in range(REPEAT)])
    two = max([await _durable(dsn, 2, logs) for _ in range(REPEAT)])
    takeover = await _takeover(dsn, logs)
    call = await _call_latency(dsn)
    client = await client_calls(dsn, logs)
    client_more = await client_calls(dsn, logs, MORE_WORKERS)
    connections = int(client["connections"])
    raw_calls = await _raw_calls(dsn, connections)
    note = f"{ENTITIES:,} sinks x {PER_ENTITY} hits, {PARTITIONS} partitions, node processes"
    client_note = (
        f"node=False client process -> 1 node process, {IN_FLIGHT} in flight over "
        f"{CLIENT_KEYS:,} keys"
    )
    raw_note = f"hand-written asyncpg counter, 1 tx per call, {connections} connections"
    return [
        Record(
            "postgres.raw.1pertx",
            raw_single,
            "activations/s",
            note=f"asyncpg, same writes, {WORKERS} connections",
        ),
        Record(
            f"postgres.raw.100pertx.{WORKERS}conn",
            raw_one,
            "activations/s",
            note=f"asyncpg, same writes, {WORKERS} connections",
        ),
        Record(
            f"postgres.raw.100pertx.{2 * WORKERS}conn",
            raw_two,
            "activations/s",
            note=f"asyncpg, same writes, {2 * WORKERS} connections",
        ),
        Record(
            "postgres.durable.1node",
            one,
            "activations/s",
            f"postgres.raw.100pertx.{WORKERS}conn",
            raw_one,
            note=note + f"; {WORKERS} workers",
        ),
        Record(
            f"postgres.durable.1node.{MORE_WORKERS}workers",
            one_more,
            "activations/s",
            "postgres.durable.1node",
            one,
            note=note + f"; {MORE_WORKERS} workers: commits side by side",
        ),
        Record(
            "postgres.durable.2nodes",
            two,
            "activations/s",
            f"postgres.raw.100pertx.{2 * WORKERS}conn",
            raw_two,
            note=note + f"; {WORKERS} workers each; target >= 1.0x",
        ),
        Record(
            "postgres.call",
            call,
            "ms",
            note="sequential calls to one entity owned by the caller's process",
        ),
        Record("postgres.raw.calls", raw_calls["calls"], "calls/s", note=raw_note),
        Record(
            "postgres.client.calls",
            client["calls"],
            "calls/s",
            "postgres.raw.calls",
            raw_calls["calls"],
            note=f"{client_note}; p50 {client['p50']:.1f} ms, p99 {client['p99']:.1f} ms "
            f"(raw p99 {raw_calls['p99']:.1f} ms); target >= 10,000/s, p99 <= 20 ms",
        ),
        Record(
            f"postgres.client.calls.{MORE_WORKERS}workers",
            client_more["calls"],
            "calls/s",
            "postgres.client.calls",
            client["calls"],
            note=f"{client_note}, the node with {MORE_WORKERS} workers; p50 "
            f"{client_more['p50']:.1f} ms, p99 {client_more['p99']:.1f} ms",
        ),
        Record(
            "postgres.client.cpu_per_call",
            client["cpu_us"],
            "us",
            "postgres.raw.cpu_per_call",
            raw_calls["cpu_us"],
            note=f"CPU of client + node + their database backends per call at {IN_FLIGHT} in "
            f"flight (/proc times): client {client['cpu_client']:.0f}, node "
            f"{client['cpu_node']:.0f}, node's db {client['cpu_node_db']:.0f}, client's db "
            f"{client['cpu_client_db']:.0f}; {MORE_WORKERS} workers: "
            f"{client_more['cpu_us']:.0f} us",
        ),
        Record(
            "postgres.client.call_p50",
            client["seq_p50"],
            "ms",
            "postgres.raw.call_p50",
            raw_calls["seq_p50"],
            note=f"one key called in sequence from a client process; p99 "
            f"{client['seq_p99']:.1f} ms; target <= 3 ms",
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
