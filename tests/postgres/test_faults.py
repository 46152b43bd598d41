"""Faults with real OS processes: three `pachytype node` processes on one
PostgreSQL, under load, then kill -9 one, pause one past its lease, or add
a fourth. After each: no acknowledged message lost, no effect applied twice,
never two activations of one entity committed by different owners, and the
partitions are taken over within the lease (+ 1 s).

How the checks can fail: every counter numbers its bumps and counts
activations; every bump sends a note to an audit that checks each counter's
notes arrive exactly once, in order. A lost message leaves `seen` short; a
bump applied twice (two owners, or a redelivery not deduplicated) makes an
anomaly in the counter and a duplicate note in its audit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Postgres
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
    wait_for_owners,
)
from tests.test_postgres_workload import refs
from tests.test_postgres_workload.entities import AuditState, CounterState

LEASE = 1.5
PARTITIONS = 12
COUNTERS = [f"c{i}" for i in range(40)]
AUDITS = 4
REGISTRY = "tests.test_postgres_workload.refs:REGISTRY"


class Cluster:
    """Node processes of one schema, a client ecosystem, and the load."""

    def __init__(self, dsn: str, schema: str, logs: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.logs = logs
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.acked = 0
        self._stop = asyncio.Event()
        self._load: asyncio.Task[None] | None = None
        self._caller: asyncio.Task[None] | None = None
        self.calls = 0
        self.client = Postgres(dsn, refs.REGISTRY, schema=schema, node=False, poll_interval=0.1)
        self.conn: asyncpg.Connection | None = None

    def start(self, node_id: str) -> None:
        self.nodes[node_id] = spawn_node(
            self.dsn,
            self.schema,
            REGISTRY,
            node_id=node_id,
            lease=LEASE,
            partitions=PARTITIONS,
            log_dir=self.logs,
        )

    async def balanced(self, nodes: set[str], timeout: float = 10) -> float:
        assert self.conn is not None
        return await wait_for_owners(self.conn, self.schema, nodes, timeout)

    async def _generate(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            await self.client.send(
                *(
                    refs.counter(c).bump(src=c, n=n, audit=refs.audit(f"a{i % AUDITS}"))
                    for i, c in enumerate(COUNTERS)
                )
            )
            self.acked = n  # the send returned: these bumps are acknowledged
            await asyncio.sleep(0.01)

    async def _call(self) -> None:
        """Calls through the fault: each must return the state right after it."""
        n = 0
        caller = refs.counter("caller")
        while not self._stop.is_set():
            n += 1
            bump = caller.bump(src="caller", n=n, audit=refs.audit("a-caller"))
            state = await asyncio.wait_for(self.client.call(bump), LEASE + 5)
            assert state == CounterState(seen=n, activations=n, anomalies=0)
            self.calls = n

    def load(self) -> None:
        loop = asyncio.get_running_loop()
        self._load = loop.create_task(self._generate())
        self._caller = loop.create_task(self._call())

    async def stop_load(self) -> None:
        self._stop.set()
        assert self._load is not None and self._caller is not None
        await self._load
        await self._caller

    async def check(self) -> None:
        """Every acknowledged bump applied exactly once, in order, with its note."""
        try:
            await asyncio.wait_for(self.client.settle(), 20)
        except TimeoutError:
            raise AssertionError(f"mail left over: {await self._leftover()}") from None
        n = self.acked
        assert n > 20, "the load generator barely ran"
        for c in COUNTERS:
            state = await self.client.state(refs.counter(c))
            assert state == CounterState(seen=n, activations=n, anomalies=0), c
        for a in range(AUDITS):
            audit = await self.client.state(refs.audit(f"a{a}"))
            expected = {c: n for i, c in enumerate(COUNTERS) if i % AUDITS == a}
            assert audit == AuditState(last=expected, anomalies=0)
        assert self.calls > 5, "the caller barely ran"
        audit = await self.client.state(refs.audit("a-caller"))
        assert audit == AuditState(last={"caller": self.calls}, anomalies=0)
        assert await self.client.dead_letters() == []

    async def _leftover(self) -> str:
        assert self.conn is not None
        rows = await self.conn.fetch(
            f"SELECT m.partition, count(*), l.owner, l.epoch, l.expires_at > now() AS valid "
            f'FROM "{self.schema}".mailbox m JOIN "{self.schema}".leases l USING (partition) '
            f"GROUP BY m.partition, l.owner, l.epoch, l.expires_at"
        )
        return "; ".join(str(dict(r)) for r in rows)

    def logs_of(self, node_id: str) -> str:
        return (self.logs / f"{node_id}.log").read_text()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    dsn = require_postgres()
    schema = new_schema_name("pt_fault")
    cluster = Cluster(dsn, schema, tmp_path)
    try:
        for i in (1, 2, 3):
            cluster.start(f"n{i}")
        cluster.conn = await asyncpg.connect(dsn)
        await _until_schema(cluster.conn, schema)
        await cluster.client.open()
        await cluster.balanced({"n1", "n2", "n3"})
        yield cluster
    finally:
        stop_processes(list(cluster.nodes.values()))
        try:
            await asyncio.wait_for(cluster.client.close(), 10)
            if cluster.conn is not None:
                await asyncio.wait_for(cluster.conn.close(), 10)
        finally:
            drop_schemas(dsn, [schema])


async def _until_schema(conn: asyncpg.Connection, schema: str) -> None:
    for _ in range(500):
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.nodes"):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no node created schema {schema!r}")


async def test_kill_9_a_node_under_load(cluster: Cluster) -> None:
    cluster.load()
    await asyncio.sleep(1.0)
    os.kill(cluster.nodes["n2"].pid, signal.SIGKILL)
    takeover = await cluster.balanced({"n1", "n3"})
    await asyncio.sleep(0.5)
    await cluster.stop_load()
    await cluster.check()
    print(
        f"kill -9: takeover {takeover:.2f}s (lease {LEASE}s), {cluster.acked} rounds, "
        f"{cluster.calls} calls"
    )
    assert takeover <= LEASE + 1


async def test_a_node_paused_past_its_lease_commits_nothing_when_resumed(
    cluster: Cluster,
) -> None:
    cluster.load()
    await asyncio.sleep(1.0)
    paused = cluster.nodes["n3"]
    os.kill(paused.pid, signal.SIGSTOP)
    takeover = await cluster.balanced({"n1", "n2"})
    await asyncio.sleep(max(0.0, LEASE + 0.5 - takeover))
    os.kill(paused.pid, signal.SIGCONT)
    rejoined = await cluster.balanced({"n1", "n2", "n3"})
    await asyncio.sleep(0.5)
    await cluster.stop_load()
    await cluster.check()
    print(f"SIGSTOP: takeover {takeover:.2f}s, rejoined {rejoined:.2f}s after SIGCONT")
    assert takeover <= LEASE + 1
    assert paused.poll() is None, "the paused node must survive its fencing"
    log = cluster.logs_of("n3")
    assert "lost partitions" in log or "(fenced)" in log, "n3 never noticed it lost its lease"


async def test_a_node_added_mid_run_gets_its_share(cluster: Cluster) -> None:
    cluster.load()
    await asyncio.sleep(1.0)
    cluster.start("n4")
    rebalanced = await cluster.balanced({"n1", "n2", "n3", "n4"})
    await asyncio.sleep(0.5)
    await cluster.stop_load()
    await cluster.check()
    print(f"join: rebalanced over 4 nodes in {rebalanced:.2f}s")
    assert rebalanced <= LEASE + 3
