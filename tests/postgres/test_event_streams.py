"""Event streams on PostgreSQL through faults (issue 13 item 3): two
`pachytype node` processes append the events, one is killed with SIGKILL
mid-load and its entities move to the other; a reader's LISTEN connection
is cut mid-stream. The reader sees every acknowledged event exactly once,
each entity's in order, positions dense and increasing; and a new client
resuming after any position it saw gets exactly the rest.

How it can fail: a stream that passes a position a later commit fills (two
nodes appending to one type) or that waits for a notification lost with its
connection misses events or stalls; a takeover that re-runs committed mail
doubles events.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype import Postgres, StoredEvent
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
    wait_for_owners,
)
from tests.events_pkg import refs
from tests.events_pkg.cart import Added, Cart, CartId

CARTS = 12
PER_CART = 40
LEASE = 1.0


async def take(stream: Any, count: int) -> list[StoredEvent[Any]]:
    out: list[StoredEvent[Any]] = []
    async for item in stream:
        out.append(item)
        if len(out) == count:
            break
    return out


async def test_a_stream_misses_nothing_through_a_node_kill_and_a_lost_listener(
    tmp_path: Path,
) -> None:
    dsn, schema = require_postgres(), new_schema_name("pt_streams")
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    total = CARTS * PER_CART
    try:
        async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=8) as client:
            for name in ("a", "b"):
                nodes[name] = spawn_node(
                    dsn,
                    schema,
                    "tests.events_pkg.refs:REGISTRY",
                    node_id=name,
                    lease=LEASE,
                    partitions=8,
                    log_dir=tmp_path,
                )
            conn = await asyncpg.connect(dsn)
            try:
                await wait_for_owners(conn, schema, {"a", "b"}, timeout=30)
                reader = asyncio.ensure_future(take(client.events_of(Cart), total))
                sent = 0

                async def write(k: int) -> None:
                    nonlocal sent
                    for i in range(PER_CART):
                        await client.send(refs.cart(CartId(f"c{k}")).add(item=f"{k}-{i}"))
                        sent += 1

                writers = asyncio.gather(*(write(k) for k in range(CARTS)))
                while sent < total // 3:
                    await asyncio.sleep(0.01)
                nodes["a"].send_signal(signal.SIGKILL)  # b takes a's carts over
                await asyncio.to_thread(nodes["a"].wait)
                while sent < 2 * total // 3:
                    await asyncio.sleep(0.01)
                cut = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    f"pachytype {schema} listen {client.node_id}"[:63],
                )
                assert cut == 1  # the reader's LISTEN connection is gone
                await writers
                seen = await asyncio.wait_for(reader, 60)
            finally:
                await conn.close()
            # Positions: dense, increasing; each cart's events once, in its order.
            assert [e.position for e in seen] == list(range(1, total + 1))
            for k in range(CARTS):
                mine = [e for e in seen if e.ref == refs.cart(CartId(f"c{k}"))]
                assert [e.seq for e in mine] == list(range(1, PER_CART + 1))
                assert [e.event for e in mine] == [Added(f"{k}-{i}", 1) for i in range(PER_CART)]
        # A new process resumes after any position it was given.
        async with Postgres(dsn, refs.REGISTRY, schema=schema, node=False) as later:
            for cut_at in (0, 1, total // 2, total - 1):
                rest = await take(later.events_of(Cart, after=cut_at), total - cut_at)
                assert rest == seen[cut_at:]
    finally:
        stop_processes(list(nodes.values()))
        drop_schemas(dsn, [schema])
