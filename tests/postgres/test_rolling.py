"""A rolling deploy on PostgreSQL: three `pachytype node` processes of
version 1 under load, replaced one at a time by version 2 (the counter's
state upgraded to version 2, a new message class `Tag`), while a version-1
client and a version-2 client (deployed before any node) keep sending.

How it can fail: every counter numbers its bumps (a lost, repeated or
reordered bump is an anomaly in its state) and notes each to an audit that
checks each counter's notes arrive once, in order; a node of version 1
loading a version-2 state would hold that entity (its mail stays: `settle`
times out) or a version-1 node receiving a `Tag` would dead-letter it; a
monitor samples the membership and lease rows throughout and records the
fewest live nodes seen and every version-1 node found owning a partition a
version-2 node had owned.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import FingerprintMismatchError, Postgres, Registry, VersionSkewError
from pachytype._compat import describe_registry
from pachytype._postgres.partition import partition_of
from pachytype._postgres.testing import (
    drop_schemas,
    lease_owners,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)
from tests.conformance.refs import REGISTRY as UNRELATED
from tests.rolling_v1 import refs as v1
from tests.rolling_v2 import refs as v2
from tests.rolling_v2.entities import AuditState, CounterState

LEASE = 1.5
PARTITIONS = 12
AUDITS = 4
OLD = [f"old{i}" for i in range(16)]
"""Counters the version-1 client bumps (audits `a0`..`a3`)."""
NEW = [f"new{i}" for i in range(16)]
"""Counters the version-2 client bumps (audits `b0`..`b3`)."""
V1 = "tests.rolling_v1.refs:REGISTRY"
V2 = "tests.rolling_v2.refs:REGISTRY"


class Rollout:
    """Node processes of one schema, two clients and their load, a monitor."""

    def __init__(self, dsn: str, schema: str, logs: Path) -> None:
        self.dsn = dsn
        self.schema = schema
        self.logs = logs
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.old = Postgres(
            dsn, v1.REGISTRY, schema=schema, node=False, lease=timedelta(seconds=LEASE)
        )
        self.new = Postgres(
            dsn, v2.REGISTRY, schema=schema, node=False, lease=timedelta(seconds=LEASE)
        )
        self.conn: asyncpg.Connection | None = None
        self.rounds = {"old": 0, "new": 0}
        """Rounds acknowledged per client (a round bumps each of its counters once)."""
        self.fewest_live = 1_000
        self.stale_owners: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.v2_digest = describe_registry(v2.REGISTRY).digest

    def start(self, node_id: str, registry: str) -> None:
        self.nodes[node_id] = spawn_node(
            self.dsn,
            self.schema,
            registry,
            node_id=node_id,
            lease=LEASE,
            partitions=PARTITIONS,
            log_dir=self.logs,
        )

    async def stop(self, node_id: str) -> None:
        """SIGTERM: the node hands its partitions over and exits."""
        proc = self.nodes[node_id]
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, f"{node_id} exited with {code}: {self.log_of(node_id)}"

    async def owners(self) -> dict[int, str | None]:
        assert self.conn is not None
        return await lease_owners(self.conn, self.schema)

    async def until(
        self, what: str, ready: Callable[[], Awaitable[bool]], timeout: float = 30
    ) -> float:
        """Wait until the async predicate `ready()` holds; seconds waited."""
        started = time.monotonic()
        while not await ready():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{what}: not within {timeout}s; owners {await self.owners()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def _bumps(self, client: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            if client == "old":
                await self.old.send(
                    *(
                        v1.counter(c).bump(src=c, n=n, audit=v1.audit(f"a{i % AUDITS}"))
                        for i, c in enumerate(OLD)
                    )
                )
            else:
                await self.new.send(
                    *(
                        v2.counter(c).bump(src=c, n=n, audit=v2.audit(f"b{i % AUDITS}"))
                        for i, c in enumerate(NEW)
                    )
                )
            self.rounds[client] = n  # the send returned: acknowledged
            await asyncio.sleep(0.02)

    async def _monitor(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await self._watch(conn)
        finally:
            await conn.close()

    async def _watch(self, conn: asyncpg.Connection) -> None:
        s = f'"{self.schema}"'
        while not self._stop.is_set():
            live = await conn.fetchval(
                f"SELECT count(*) FROM {s}.nodes WHERE kind = 'node' "
                f"AND heartbeat_at > now() - $1 * interval '1 second'",
                LEASE,
            )
            self.fewest_live = min(self.fewest_live, live)
            # A version-1 node must never own a partition a version-2 node owned.
            for r in await conn.fetch(
                f"SELECT partition, owner FROM {s}.leases WHERE owner LIKE 'v1-%' "
                f"AND $1 = ANY(writers)",
                self.v2_digest,
            ):
                self.stale_owners.append(f"{r['owner']} owns partition {r['partition']}")
            await asyncio.sleep(0.05)

    def load(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._bumps("old")),
            loop.create_task(self._bumps("new")),
            loop.create_task(self._monitor()),
        ]

    async def stop_load(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def cancel_load(self) -> None:
        """After a failure: stop the load without waiting for its sends."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def log_of(self, node_id: str) -> str:
        return (self.logs / f"{node_id}.log").read_text()


@pytest.fixture
async def rollout(tmp_path: Path) -> AsyncIterator[Rollout]:
    dsn = require_postgres()
    schema = new_schema_name("pt_roll")
    rollout = Rollout(dsn, schema, tmp_path)
    try:
        for i in (1, 2, 3):
            rollout.start(f"v1-{i}", V1)
        rollout.conn = await asyncpg.connect(dsn)

        async def three_own_everything() -> bool:
            try:
                owners = await rollout.owners()
            except asyncpg.UndefinedTableError:
                return False
            return set(owners.values()) == {"v1-1", "v1-2", "v1-3"}

        await rollout.until("three version-1 nodes own every partition", three_own_everything)
        yield rollout
    finally:
        await rollout.cancel_load()
        stop_processes(list(rollout.nodes.values()))
        try:
            for client in (rollout.old, rollout.new):
                await asyncio.wait_for(client.close(), 10)
            if rollout.conn is not None:
                await asyncio.wait_for(rollout.conn.close(), 10)
        finally:
            drop_schemas(dsn, [schema])


async def test_three_nodes_replaced_one_at_a_time_by_a_new_version_under_load(
    rollout: Rollout,
) -> None:
    started = time.monotonic()
    # The version-2 client (the web tier) is deployed first: it may send what
    # version 1 decodes, and reads the upgraded states.
    await rollout.old.open()
    await rollout.new.open()
    with pytest.raises(VersionSkewError) as info:
        await rollout.new.send(v2.counter("new0").tag(label="early"))
    assert str(info.value).startswith(
        "cannot send Tag to entity type 'counter': live nodes v1-1, v1-2, v1-3 (which may own "
        "its partition "
    )
    assert "has no message class Tag for 'counter'. Deploy this version" in str(info.value)
    rollout.load()
    await asyncio.sleep(1.0)

    for i in (1, 2, 3):
        rollout.start(f"v2-{i}", V2)

        async def joined(i: int = i) -> bool:
            return f"v2-{i}" in (await rollout.owners()).values()

        await rollout.until(f"v2-{i} owns partitions", joined)
        await asyncio.sleep(0.5)
        await rollout.stop(f"v1-{i}")

        async def handed_over(i: int = i) -> bool:
            owners = set((await rollout.owners()).values())
            return f"v1-{i}" not in owners and None not in owners

        await rollout.until(f"v1-{i}'s partitions taken over", handed_over)
        await asyncio.sleep(0.5)

    # Every node runs version 2 now: the new message may be sent (once the
    # client's view has seen the last version-1 node leave).
    async def tag_sent() -> bool:
        try:
            await rollout.new.send(*(v2.counter(c).tag(label="v2") for c in OLD + NEW))
        except VersionSkewError:
            return False
        return True

    await rollout.until("Tag accepted after the deploy", tag_sent)
    await asyncio.sleep(0.5)
    await rollout.stop_load()
    try:
        await asyncio.wait_for(rollout.new.settle(), 30)
    except TimeoutError:
        raise AssertionError("mail left over: held entities or an orphaned partition") from None
    duration = time.monotonic() - started

    applied = 0
    for client, counters, audit in (("old", OLD, "a"), ("new", NEW, "b")):
        n = rollout.rounds[client]
        assert n > 20, f"the {client} client barely ran"
        for c in counters:
            state = await rollout.new.state(v2.counter(c))
            assert state == CounterState(seen=n, applied=n, anomalies=0, tags=("v2",)), c
            applied += state.applied
        for a in range(AUDITS):
            expected = {c: n for i, c in enumerate(counters) if i % AUDITS == a}
            assert await rollout.new.state(v2.audit(f"{audit}{a}")) == AuditState(expected, 0)
    assert await rollout.new.dead_letters() == []
    assert rollout.conn is not None
    versions = await rollout.conn.fetch(
        f"SELECT DISTINCT version FROM \"{rollout.schema}\".states WHERE entity_type = 'counter'"
    )
    assert [r[0] for r in versions] == [2]
    # A held entity is logged by its node (StateVersionError: "...messages wait").
    held = [
        line
        for n in rollout.nodes
        for line in rollout.log_of(n).splitlines()
        if "stored state has version" in line
    ]
    assert held == [], held[:3]
    assert rollout.stale_owners == [], rollout.stale_owners[:3]
    assert rollout.fewest_live >= 1
    acked = sum(rollout.rounds.values()) * len(OLD)
    print(
        f"rolling deploy: {acked} bumps acknowledged ({rollout.rounds}), {applied} applied, "
        f"{len(OLD + NEW)} tags, 0 dead letters, {len(held)} held, fewest live nodes "
        f"{rollout.fewest_live}, {duration:.1f}s"
    )
    assert applied == acked


async def test_a_registry_that_cannot_run_beside_the_live_nodes_is_refused(
    rollout: Rollout,
) -> None:
    with pytest.raises(FingerprintMismatchError) as info:
        async with Postgres(rollout.dsn, UNRELATED, schema=rollout.schema, node=False):
            pass
    assert str(info.value).startswith(
        f"client with registry 'tests.conformance' ({UNRELATED.fingerprint[:12]}) cannot join "
        f"schema {rollout.schema!r}: live node v1-1 runs registry 'tests.rolling_v1' "
        f"({v1.REGISTRY.fingerprint[:12]}), and "
    )


@pytest.fixture
async def schema() -> AsyncIterator[tuple[str, str]]:
    dsn = require_postgres()
    name = new_schema_name("pt_roll")
    yield dsn, name
    drop_schemas(dsn, [name])


async def _until_shared(
    conn: asyncpg.Connection, schema: str, nodes: set[str]
) -> dict[int, str | None]:
    """The lease owners, once exactly `nodes` own partitions (at most 10 leases)."""
    deadline = time.monotonic() + 10 * LEASE
    while True:
        owners = await lease_owners(conn, schema)
        if set(owners.values()) == nodes:
            return owners
        assert time.monotonic() < deadline, f"partitions not shared by {nodes}: {owners}"
        await asyncio.sleep(0.05)


def _node(dsn: str, schema: str, registry: Registry, node_id: str) -> Postgres:
    return Postgres(
        dsn,
        registry,
        schema=schema,
        partitions=4,
        lease=timedelta(seconds=LEASE),
        poll_interval=0.1,
        node_id=node_id,
    )


async def test_an_activation_may_not_send_what_a_node_of_the_old_version_could_receive(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        async with (
            _node(dsn, name, v1.REGISTRY, "old"),
            _node(dsn, name, v2.REGISTRY, "new") as new,
        ):
            owners = await _until_shared(conn, name, {"old", "new"})

            def owned_by(entity: str, node_id: str) -> tuple[str, int]:
                for i in range(1000):
                    partition = partition_of(entity, f"x{i}", 4)
                    if owners[partition] == node_id:
                        return f"x{i}", partition
                raise AssertionError(f"{node_id} owns no partition: {owners}")

            # The audit lives where only version 2 may own it now; the counter
            # where the version-1 node may: the relayed Tag must not go there.
            audit, _ = owned_by("audit", "new")
            counter, partition = owned_by("counter", "old")
            await new.send(v2.audit(audit).relay(label="x", to=v2.counter(counter)))
            await new.settle()
            [dead] = await new.dead_letters()
            assert dead.to == v2.audit(audit)
            assert dead.error_type == "VersionSkewError"
            v1_fp, v2_fp = v1.REGISTRY.fingerprint[:12], v2.REGISTRY.fingerprint[:12]
            assert dead.error == (
                f"cannot send Tag to entity type 'counter': live node old (which may own its "
                f"partition {partition}) cannot decode it: 'tests.rolling_v1' ({v1_fp}) has no "
                f"message class Tag for 'counter'. Deploy this version ('tests.rolling_v2' "
                f"({v2_fp})) to every node first (start the new nodes, then stop the old ones "
                f"with SIGTERM), then send it; nothing was sent"
            )
            assert await conn.fetchval(f'SELECT count(*) FROM "{name}".mailbox') == 0
    finally:
        await conn.close()


async def test_an_old_node_never_takes_a_partition_a_new_one_owned_its_mail_waits(
    schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        async with _node(dsn, name, v1.REGISTRY, "old") as old:
            new = _node(dsn, name, v2.REGISTRY, "new")
            await new.open()
            owners = await _until_shared(conn, name, {"old", "new"})
            ids = [f"x{i}" for i in range(1000)]
            counter = next(c for c in ids if owners[partition_of("counter", c, 4)] == "new")
            partition = partition_of("counter", counter, 4)
            bump = v1.counter(counter).bump(src=counter, n=1, audit=v1.audit("a"))
            await old.send(bump)  # version 1 sends, version 2 activates: state version 2
            await old.settle()
            assert (
                await conn.fetchval(
                    f'SELECT version FROM "{name}".states WHERE entity_id = $1', counter
                )
                == 2
            )
            await new.close()  # a rollback: the new node goes away
            said = "no live node may own partitions"
            deadline = time.monotonic() + 10 * LEASE
            while not any(said in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, f"the old node never said {said!r}"
                await asyncio.sleep(0.05)
            await old.send(v1.counter(counter).bump(src=counter, n=2, audit=v1.audit("a")))
            owners = await lease_owners(conn, name)
            assert owners[partition] is None
            assert old.blocked() == {}  # not held: never loaded by the old code
            waiting = f'SELECT count(*) FROM "{name}".mailbox WHERE partition = $1'
            assert await conn.fetchval(waiting, partition) == 1
            async with _node(dsn, name, v2.REGISTRY, "new-again") as again:
                await again.settle()
                state = await again.state(v2.counter(counter))
                assert state == CounterState(seen=2, applied=2, anomalies=0)
    finally:
        await conn.close()
