"""Nodes: any node serves any entity, SIGTERM hands partitions over, a
partition handed over in a rebalance keeps its entities' recent messages (and
so does one taken from a killed node, up to `recent_every` before), a node
whose lease was taken commits nothing, a node paused mid-commit past its
session timeout goes on, a node whose worker fails hands every partition
over, a node with other types is refused, and the DSN's password is never
shown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import ActivationError, Postgres, Registry
from pachytype._postgres.dsn import redact
from pachytype._postgres.lease import FingerprintMismatchError
from pachytype._postgres.partition import partition_of
from pachytype._postgres.testing import (
    lease_owners,
    spawn_node,
    stop_processes,
    wait_for_owners,
)
from tests.conformance import refs
from tests.conformance.entities import Add, Fail, TallyId
from tests.conformance.refs import REGISTRY
from tests.test_postgres_workload.refs import REGISTRY as WORKLOAD

LEASE = timedelta(seconds=2)


def node(dsn: str, schema: str, node_id: str, registry: Registry = REGISTRY) -> Postgres:
    return Postgres(
        dsn, registry, schema=schema, partitions=8, lease=LEASE, poll_interval=0.1, node_id=node_id
    )


async def tally_owned_by(conn: asyncpg.Connection, schema: str, owner: str) -> str:
    owners = await lease_owners(conn, schema)
    for i in range(1000):
        if owners[partition_of("tally", f"t{i}", 8)] == owner:
            return f"t{i}"
    raise AssertionError(f"{owner} owns no partition: {owners}")


async def test_any_node_serves_call_state_and_follow_for_an_entity_another_owns(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    async with node(dsn, name, "a") as a, node(dsn, name, "b") as b:
        conn = await asyncpg.connect(dsn)
        try:
            await wait_for_owners(conn, name, {"a", "b"}, 10)
            id = TallyId(await tally_owned_by(conn, name, "b"))
        finally:
            await conn.close()
        seen: list[int] = []

        async def watch() -> None:
            async for state in a.follow(refs.tally(id)):
                seen.append(state)
                if len(seen) == 3:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.1)
        assert await a.call(refs.tally(id).add(n=2)) == 2  # answered by b, through a reply row
        await b.send(refs.tally(id).add(n=3))
        await asyncio.wait_for(watcher, 5)
        assert seen == [0, 2, 5]
        assert await a.state(refs.tally(id)) == 5
        with pytest.raises(ActivationError) as info:
            await a.call(refs.tally(id).fail(reason="far away"))
        assert "raised RuntimeError: far away" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)


async def test_a_partition_handed_over_in_a_rebalance_keeps_its_recent_messages(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    ids = [TallyId(f"t{i}") for i in range(32)]  # over every partition
    async with node(dsn, name, "a") as a:
        await a.send(*(refs.tally(id).add(n=1) for id in ids))
        await a.settle()  # noted in a's memory only: a dead letter's context
        async with node(dsn, name, "b") as b:
            conn = await asyncpg.connect(dsn)
            try:
                await wait_for_owners(conn, name, {"a", "b"}, 10)
                owners = await lease_owners(conn, name)
            finally:
                await conn.close()
            id = next(id for id in ids if owners[partition_of("tally", id, 8)] == "b")
            with pytest.raises(ActivationError):
                await b.call(refs.tally(id).fail(reason="moved"))
            (dead,) = [d for d in await b.dead_letters() if d.to == refs.tally(id)]
            assert dead.recent == (Add(n=1), Fail("moved"))


async def test_a_node_killed_keeps_the_recent_messages_it_ran_before_recent_every(
    schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, name = schema
    id = TallyId("dl")
    async with Postgres(dsn, REGISTRY, schema=name, node=False, partitions=8) as client:
        killed = spawn_node(
            dsn,
            name,
            "tests.conformance.refs:REGISTRY",
            node_id="k",
            lease=1.0,
            partitions=8,
            log_dir=tmp_path,
        )
        try:
            await client.call(refs.tally(id).add(n=1))
            await client.call(refs.tally(id).add(n=2))
            conn = await asyncpg.connect(dsn)
            try:  # readiness: the idle node writes them within recent_every (1 s)
                for _ in range(500):
                    if await conn.fetchval(
                        f'SELECT count(*) FROM "{name}".states WHERE recent IS NOT NULL'
                    ):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError(f"no recent messages written: {tmp_path / 'k.log'}")
            finally:
                await conn.close()
            os.kill(killed.pid, signal.SIGKILL)
            assert killed.wait(10) == -signal.SIGKILL
        finally:
            stop_processes([killed])
        async with node(dsn, name, "b"):  # takes every partition once k's lease expired
            with pytest.raises(ActivationError):
                await client.call(refs.tally(id).fail(reason="after the kill"))
            (dead,) = await client.dead_letters()
            assert dead.recent == (Add(n=1), Add(n=2), Fail("after the kill"))


async def test_a_node_whose_lease_was_taken_commits_nothing(schema: tuple[str, str]) -> None:
    dsn, name = schema
    async with node(dsn, name, "a") as a:
        await a.call(refs.tally(TallyId("f")).add(n=1))
        conn = await asyncpg.connect(dsn)
        try:
            # What a takeover by another node does: new owner, new epoch.
            await conn.execute(
                f"UPDATE \"{name}\".leases SET owner = 'thief', epoch = epoch + 1, "
                f"expires_at = now() + interval '1 hour'"
            )
            await a.send(refs.tally(TallyId("f")).add(n=1))
            await asyncio.sleep(0.5)  # a's chance to commit it, were it to ignore the theft
            # Until a's heartbeat reads the leases (a fixed wait lost the race on
            # a loaded machine): then it owns nothing, and committed nothing.
            assert a.node is not None
            async with asyncio.timeout(10):
                while a.node.ownership.epochs:
                    await asyncio.sleep(0.01)
            assert await conn.fetchval(f'SELECT count(*) FROM "{name}".mailbox') == 1
            assert await a.state(refs.tally(TallyId("f"))) == 1
        finally:
            await conn.close()


async def test_a_node_paused_mid_commit_past_its_session_timeout_reloads_and_goes_on(
    schema: tuple[str, str],
) -> None:
    """The server ends a node's session (`idle_in_transaction_session_timeout`)
    while the node is paused in a commit's transaction (one with a dead letter
    needs several statements); when it resumes it reads the reply and the end
    of the session together, asyncpg refuses the next statement with an
    `InternalClientError`, and the commit's outcome is unknown: the worker
    reloads from the database and goes on. (It used to take that error for a
    dead store and stop for good, its partitions still leased.)"""
    dsn, name = schema
    tally = refs.tally(TallyId("paused"))
    async with node(dsn, name, "a") as a:
        assert await a.call(tally.add(n=1)) == 1
        holder = await asyncpg.connect(dsn)
        watcher = await asyncpg.connect(dsn)
        try:
            # The lease rows locked for a second by a transaction the server
            # ends alone: the commit waits there, then runs while we sleep.
            held = asyncio.create_task(
                holder.execute(
                    f'BEGIN; SELECT 1 FROM "{name}".leases FOR UPDATE; SELECT pg_sleep(1); COMMIT'
                )
            )
            await _until(watcher, "wait_event = 'PgSleep' AND pid = $1", holder.get_server_pid())
            call = asyncio.create_task(a.call(tally.fail(reason="paused")))
            commit = f'%"{name}".leases%KEY SHARE%'
            await _until(watcher, "wait_event_type = 'Lock' AND query LIKE $1", commit)
            # The whole process stops (as under SIGSTOP): the lock goes, the
            # commit's statement returns, and its session idles past the timeout.
            time.sleep(1 + LEASE.total_seconds() / 2 + 0.5)
            with pytest.raises(ActivationError, match="raised RuntimeError: paused"):
                await asyncio.wait_for(call, 10)
            await held
            assert await a.call(tally.add(n=1)) == 2
            assert [d.message for d in await a.dead_letters()] == [Fail(reason="paused")]
            assert await watcher.fetchval(f'SELECT count(*) FROM "{name}".mailbox') == 0
        finally:
            await holder.close()
            await watcher.close()


async def _until(conn: asyncpg.Connection, where: str, arg: object) -> None:
    """Until a backend of this database matches `where` in pg_stat_activity."""
    for _ in range(500):
        if await conn.fetchval(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND {where}",
            arg,
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no backend with {where} ({arg!r}) within 5 s")


async def test_a_node_whose_worker_fails_hands_every_partition_over(
    schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # A bug below the runtime (here a commit raising an error no rule expects)
    # must not strand mail behind leases the node goes on renewing.
    dsn, name = schema
    async with node(dsn, name, "a") as a, node(dsn, name, "b") as b:
        conn = await asyncpg.connect(dsn)
        try:
            await wait_for_owners(conn, name, {"a", "b"}, 10)
            id = TallyId(await tally_owned_by(conn, name, "a"))
            assert a.node is not None
            store = a.node.stores[partition_of("tally", id, 8) % a.node.workers]

            async def broken(batch: object) -> None:
                raise RuntimeError("injected: a bug in the commit")

            store.commit = broken  # type: ignore[method-assign]  # the fault
            sent = 20
            for _ in range(sent):
                await b.send(refs.tally(id).add(n=1))  # acknowledged: in the mailbox
            failure = await asyncio.wait_for(a.node.failed(), 10)
            assert isinstance(failure, RuntimeError)
            await wait_for_owners(conn, name, {"b"}, 10)

            async def applied() -> int:
                async for state in b.follow(refs.tally(id)):
                    if state >= sent:
                        return state
                raise AssertionError("b closed first")

            assert await asyncio.wait_for(applied(), 20) == sent  # none lost, none doubled
            assert await conn.fetchval(f'SELECT count(*) FROM "{name}".mailbox') == 0
        finally:
            await conn.close()
    assert "node a: a worker failed (RuntimeError: injected: a bug in the commit)" in caplog.text
    assert "the Postgres runtime stopped: its store failed" in caplog.text


async def test_a_node_with_other_entity_types_is_refused(schema: tuple[str, str]) -> None:
    dsn, name = schema
    other = WORKLOAD  # another package: other types, another fingerprint
    async with node(dsn, name, "old"):
        with pytest.raises(FingerprintMismatchError) as info:
            async with node(dsn, name, "new", other):
                pass
    message = str(info.value)
    assert message.startswith(
        f"node with registry 'tests.test_postgres_workload' ({WORKLOAD.fingerprint[:12]}) "
        f"cannot join schema {name!r}: live node old runs registry "
        f"'tests.conformance' ({REGISTRY.fingerprint[:12]}), and "
        f"'tests.test_postgres_workload' ({WORKLOAD.fingerprint[:12]}) and "
        f"'tests.conformance' ({REGISTRY.fingerprint[:12]}) have no entity type in common "
    )
    assert "Stop the old nodes first (SIGTERM hands their partitions over" in message


async def test_sigterm_hands_partitions_over_before_exit(
    schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, name = schema
    registry = "tests.conformance.refs:REGISTRY"
    procs = {
        n: spawn_node(dsn, name, registry, node_id=n, lease=5.0, partitions=8, log_dir=tmp_path)
        for n in ("p1", "p2")
    }
    conn = await asyncpg.connect(dsn)
    try:
        while not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{name}.leases"):
            await asyncio.sleep(0.02)
        await wait_for_owners(conn, name, {"p1", "p2"}, 15)
        procs["p2"].send_signal(signal.SIGTERM)
        handover = await wait_for_owners(conn, name, {"p1"}, 15)
        assert procs["p2"].wait(10) == 0
        assert handover < 2.0  # well under the 5 s lease: handed over, not expired
        assert "handing its partitions over" in (tmp_path / "p2.log").read_text()
    finally:
        stop_processes(list(procs.values()))
        await conn.close()


async def test_the_dsn_password_is_never_printed(schema: tuple[str, str], tmp_path: Path) -> None:
    dsn, name = schema
    secret = "s3cr3t-Pa55"
    user, rest = dsn.split("://", 1)[1].split("@", 1)
    with_password = f"postgresql://{user.split(':')[0]}:{secret}@{rest}"
    proc = spawn_node(
        with_password,
        name,
        "tests.conformance.refs:REGISTRY",
        node_id="pw",
        lease=2.0,
        partitions=8,
        log_dir=tmp_path,
    )
    log = tmp_path / "pw.log"
    try:
        for _ in range(500):
            if "joined schema" in log.read_text():
                break
            await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "joined schema" in text and ":***@" in text
    assert secret not in text
    eco = Postgres(with_password, REGISTRY, schema=name)
    assert secret not in repr(eco) and ":***@" in repr(eco)


async def test_an_unreachable_server_is_named_without_its_password() -> None:
    eco = Postgres("postgresql://app:hunter2@127.0.0.1:1/db", REGISTRY, schema="x")
    with pytest.raises(ConnectionError) as info:
        await eco.open()
    assert str(info.value).startswith(
        "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/db: "
    )
    assert "hunter2" not in str(info.value)


def test_redact_hides_passwords_in_both_dsn_forms() -> None:
    assert redact("postgresql://u:pw@h:5432/d?x=1") == "postgresql://u:***@h:5432/d?x=1"
    assert redact("host=h user=u password=pw dbname=d") == "host=h user=u password=*** dbname=d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


async def test_follow_survives_losing_the_listen_connection(schema: tuple[str, str]) -> None:
    dsn, name = schema
    async with node(dsn, name, "l") as eco:
        seen: list[int] = []

        async def watch() -> None:
            async for state in eco.follow(refs.tally(TallyId("w"))):
                seen.append(state)
                if state >= 3:
                    return

        watcher = asyncio.create_task(watch())
        await eco.call(refs.tally(TallyId("w")).add(n=1))
        conn = await asyncpg.connect(dsn)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"pachytype {name} listen l",
            )
            assert killed == 1
        finally:
            await conn.close()
        await asyncio.sleep(0.2)
        await eco.call(refs.tally(TallyId("w")).add(n=2))
        await asyncio.wait_for(watcher, 5)
        assert seen[0] in (0, 1) and seen[-1] == 3


async def test_old_dedupe_ids_replies_and_dead_nodes_are_swept(schema: tuple[str, str]) -> None:
    dsn, name = schema
    async with node(dsn, name, "s") as eco:
        await eco.send(refs.tally(TallyId("x")).add(n=1))
        await eco.settle()
        conn = await asyncpg.connect(dsn)
        s = f'"{name}"'
        try:
            await conn.execute(
                f"INSERT INTO {s}.dedupe (msg_id, consumed_at) "
                f"VALUES ('00000000-0000-7000-8000-000000000001', now() - interval '2 hours')"
            )
            await conn.execute(
                f"INSERT INTO {s}.replies (msg_id, created_at) "
                f"VALUES ('00000000-0000-7000-8000-000000000002', now() - interval '1 hour')"
            )
            await conn.execute(
                f"INSERT INTO {s}.nodes (node_id, fingerprint, host, pid, heartbeat_at) "
                f"VALUES ('gone', '', 'h', 1, now() - interval '2 days')"
            )
            assert eco.node is not None
            await eco.node.membership.sweep(conn)
            assert await conn.fetchval(f"SELECT count(*) FROM {s}.dedupe") == 1  # the recent one
            assert await conn.fetchval(f"SELECT count(*) FROM {s}.replies") == 0
            nodes = {r[0] for r in await conn.fetch(f"SELECT node_id FROM {s}.nodes")}
            assert nodes == {"s"}
        finally:
            await conn.close()


def test_nonsense_settings_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError) as info:
        Postgres("postgresql://u@h/d", REGISTRY, schema="s", workers=0)
    assert str(info.value) == (
        "Postgres(schema='s'): workers (0) and batch (2000) must be >= 1, "
        "lease (0:00:05) and poll_interval (0.5) positive"
    )
    with pytest.raises(ValueError) as info:
        Postgres("postgresql://u@h/d", REGISTRY, schema="s", recent_every=-1)
    assert str(info.value) == (
        "recent_every=-1 for Postgres(schema='s'): give the most seconds a dead letter's "
        "recent messages may wait to be written, 0 or more (0: with every commit; default 1)"
    )
