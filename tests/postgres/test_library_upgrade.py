"""Upgrading pachytype itself on a live PostgreSQL schema (a new schema
version): the newer library refuses to migrate while members of the older
one are live, naming them; once they are stopped it migrates, and every
acknowledged message is applied once; an older library meets the newer
schema only to be refused (at open, and at a heartbeat of a process that
was already running: a node hands its partitions over, every operation
raises).

The old library is real: the last pachytype of schema version 4
(`LAST_V4`, from this repository's git history) runs as `pachytype node`
processes and a client process, with its own copy of `tests.rolling_v1`
(counters that number their bumps: a lost, repeated or reordered bump is
an anomaly in the state, and each bump's note to an audit is checked the
same way).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Postgres
from pachytype._postgres.inspect import migrate_schema
from pachytype._postgres.schema import (
    LIVE_WITHIN_S,
    MIGRATIONS,
    VERSION,
    SchemaError,
    current_version,
    migrate,
    quote_schema,
)
from pachytype._postgres.testing import (
    lease_owners,
    stop_processes,
)
from tests.rolling_v1 import refs

LAST_V4 = "b7736ab67a627f62c62ade938a1977e358be1816"
"""The last commit whose library writes schema version 4 (the next, on main,
brought the unified runtime and version 5)."""

REPO = Path(__file__).resolve().parents[2]
LEASE = 1.5
PARTITIONS = 8
COUNTERS = [f"c{i}" for i in range(8)]
ROUNDS = 10
"""Rounds of bumps (one to each counter) per phase: old client with old nodes
live, old client with none, new library."""

OLD_CLIENT = """
import asyncio, os, sys
from datetime import timedelta
from pachytype import Postgres
from tests.rolling_v1 import refs

COUNTERS = {counters!r}

async def rounds(eco, first, last):
    for n in range(first, last + 1):
        await eco.send(*(refs.counter(c).bump(src=c, n=n, audit=refs.audit(f"a{{i % 2}}"))
                         for i, c in enumerate(COUNTERS)))
    print(last, flush=True)  # acknowledged: every round up to `last`

async def main(schema, per_phase):
    await asyncio.to_thread(sys.stdin.readline)  # imported; open once the nodes made the schema
    async with Postgres(os.environ["PACHYTYPE_DSN"], refs.REGISTRY, schema=schema, node=False,
                        node_id="old-client", lease=timedelta(seconds={lease})) as eco:
        late = refs.counter("late").bump(src="late", n=1, audit=refs.audit("late"))
        await eco.send(late.after(timedelta(seconds=2)))  # pending across the upgrade
        await rounds(eco, 1, per_phase)
        await asyncio.to_thread(sys.stdin.readline)
        await rounds(eco, per_phase + 1, 2 * per_phase)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def old_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the pachytype of `LAST_V4` and its `tests.rolling_v1`."""
    reason = _cannot_extract()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires it (CI clones the whole history)")
        pytest.skip(reason)
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            LAST_V4,
            "pachytype",
            "tests/__init__.py",
            "tests/rolling_v1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    root = tmp_path_factory.mktemp("pachytype_v4")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)  # our own history's archive: trusted
    (root / "old_client.py").write_text(OLD_CLIENT.format(counters=COUNTERS, lease=LEASE))
    return root


def _cannot_extract() -> str | None:
    """Why the old library cannot be taken from git history (None: it can)."""
    if shutil.which("git") is None:
        return "git is not installed: the old library comes from this repository's history"
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{LAST_V4}^{{commit}}"],
        capture_output=True,
    )
    if found.returncode != 0:
        return f"commit {LAST_V4[:12]} (the last schema-v4 pachytype) is not in this clone"
    return None


def run_old(
    root: Path, dsn: str, args: list[str], log: Path, piped: bool = False
) -> subprocess.Popen[bytes]:
    """A process of the old library (its tree first on the path), fed through
    stdin; its output goes to `log` (or stdout to a pipe if `piped`)."""
    env = {**os.environ, "PACHYTYPE_DSN": dsn, "PYTHONPATH": str(root)}
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, *args], cwd=root, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if piped else out,
            stderr=out if piped else subprocess.STDOUT,
        )  # fmt: skip


def old_client(root: Path, dsn: str, schema: str, logs: Path) -> subprocess.Popen[bytes]:
    """The old client: prints each acknowledged round count, waits for a line between phases."""
    args = ["old_client.py", schema, str(ROUNDS)]
    return run_old(root, dsn, args, logs / "client.log", piped=True)


def old_node(
    root: Path, dsn: str, schema: str, node_id: str, logs: Path
) -> subprocess.Popen[bytes]:
    args = ["-m", "pachytype", "node", "--schema", schema, "--lease", str(LEASE),
            "--partitions", str(PARTITIONS), "--workers", "1", "--node-id", node_id,
            "tests.rolling_v1.refs:REGISTRY"]  # fmt: skip
    return run_old(root, dsn, args, logs / f"{node_id}.log")


async def until(what: str, ready: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    started = time.monotonic()
    while not await ready():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_newer_library_migrates_only_once_the_older_one_is_stopped(
    schema: tuple[str, str], old_library: Path, tmp_path: Path
) -> None:
    dsn, name = schema
    s = quote_schema(name)
    conn = await asyncpg.connect(dsn)
    nodes = [old_node(old_library, dsn, name, n, tmp_path) for n in ("old0", "old1")]
    client = old_client(old_library, dsn, name, tmp_path)
    processes = [*nodes, client]
    late_node: subprocess.Popen[bytes] | None = None
    try:

        async def old_nodes_own_all() -> bool:
            owners = await lease_owners(conn, name) if await current_version(conn, name) else {}
            return len(owners) == PARTITIONS and set(owners.values()) == {"old0", "old1"}

        await until("the old nodes own every partition", old_nodes_own_all)
        assert await current_version(conn, name) == 4  # the old library made the schema
        assert client.stdout is not None and client.stdin is not None
        client.stdin.write(b"open\n")
        client.stdin.flush()
        acknowledged = int(await asyncio.to_thread(client.stdout.readline))
        assert acknowledged == ROUNDS

        # The newer library, as a node and as `pachytype migrate`: refused, untouched.
        with pytest.raises(SchemaError) as opening:
            async with Postgres(dsn, refs.REGISTRY, schema=name, node_id="new0"):
                pass
        with pytest.raises(SchemaError) as migrating:
            await migrate_schema(dsn, name)
        refusal = re.compile(
            rf"schema '{name}' is at version 4 and this pachytype writes version {VERSION}, "
            rf"but 3 members of an older pachytype are live: "
            rf"client old-client \(host \S+, pid {client.pid}, last heartbeat [\d.]+ s ago\); "
            rf"node old0 \(host \S+, pid {nodes[0].pid}, last heartbeat [\d.]+ s ago, "
            rf"holding \d partitions?\); "
            rf"node old1 \(host \S+, pid {nodes[1].pid}, last heartbeat [\d.]+ s ago, "
            rf"holding \d partitions?\)\. They would go on running version-4 SQL against "
            rf"version-{VERSION} tables, so nothing was migrated\. Stop every process of the "
            rf"older pachytype first \(SIGTERM hands a node's partitions over; mail waits in "
            rf"the database\), then start this version; a process killed without SIGTERM "
            rf"counts as live until {LIVE_WITHIN_S:.0f} s after its last heartbeat \(and "
            rf"until its leases expire\)"
        )
        for refused in (opening.value, migrating.value):
            assert refusal.fullmatch(str(refused)), str(refused)
        assert await current_version(conn, name) == 4

        async def old_nodes_drained() -> bool:  # version-4 SQL: the old nodes still serve
            due = (
                f"SELECT count(*) FROM {s}.mailbox WHERE deliver_at IS NULL OR deliver_at <= now()"
            )
            left: int = await conn.fetchval(due)
            return left == 0

        await until("the old nodes apply the first rounds", old_nodes_drained)

        # Stop the old nodes (SIGTERM: they hand their partitions over); the
        # old client sends more with no node live, then leaves.
        for proc in nodes:
            proc.terminate()
        for proc in nodes:
            assert await asyncio.to_thread(proc.wait, 20) == 0
        client.stdin.write(b"go on\n")
        client.stdin.flush()
        acknowledged = int(await asyncio.to_thread(client.stdout.readline))
        assert acknowledged == 2 * ROUNDS
        assert await asyncio.to_thread(client.wait, 20) == 0
        # The second rounds wait (and the late bump, unless the old nodes ran it).
        pending = await conn.fetchval(f"SELECT count(*) FROM {s}.mailbox")
        assert pending in (len(COUNTERS) * ROUNDS, len(COUNTERS) * ROUNDS + 1)

        async with Postgres(
            dsn, refs.REGISTRY, schema=name, node_id="new0", lease=timedelta(seconds=LEASE)
        ) as eco:
            assert await current_version(conn, name) == VERSION
            # An old node started now is refused at open (the schema is newer).
            late_node = old_node(old_library, dsn, name, "old2", tmp_path)
            processes.append(late_node)
            for n in range(2 * ROUNDS + 1, 3 * ROUNDS + 1):
                await eco.send(
                    *(
                        refs.counter(c).bump(src=c, n=n, audit=refs.audit(f"a{i % 2}"))
                        for i, c in enumerate(COUNTERS)
                    )
                )
            sent = 3 * ROUNDS  # rounds acknowledged in all: old library 2, new library 1

            async def all_applied() -> bool:
                seen = [(await eco.state(refs.counter(c))).seen for c in [*COUNTERS, "late"]]
                return seen == [sent] * len(COUNTERS) + [1]

            await until("every acknowledged bump applied", all_applied)
            counters = [await eco.state(refs.counter(c)) for c in COUNTERS]
            audits = [await eco.state(refs.audit(a)) for a in ("a0", "a1")]
            late = await eco.state(refs.counter("late"))
            mailbox = await conn.fetchval(f"SELECT count(*) FROM {s}.mailbox")
            owners = await lease_owners(conn, name)
        assert [(c.activations, c.anomalies) for c in counters] == [(sent, 0)] * len(COUNTERS)
        assert (late.seen, late.activations, late.anomalies) == (1, 1, 0)
        assert [a.anomalies for a in audits] == [0, 0]
        assert audits[0].last | audits[1].last == {c: sent for c in COUNTERS}
        applied = sum(c.activations for c in counters) + late.activations
        assert applied == len(COUNTERS) * sent + 1  # none lost, none doubled
        assert mailbox == 0 and set(owners.values()) == {"new0"}

        assert await asyncio.to_thread(late_node.wait, 20) == 1
        said = (tmp_path / "old2.log").read_text()
        newer = f"schema {name!r} is at version {VERSION}, newer than this pachytype (version 4)"
        assert newer in said, said
    finally:
        await conn.close()
        stop_processes(processes)
        for proc in processes:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


async def test_a_process_stops_using_a_schema_a_newer_library_migrated(
    schema: tuple[str, str],
) -> None:
    # A process paused past LIVE_WITHIN_S is not live to the migration: when
    # it resumes, its heartbeat finds the schema moved past its library. A
    # node hands its partitions over; node and client refuse every operation.
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    lease = timedelta(seconds=1)
    try:
        async with (
            Postgres(dsn, refs.REGISTRY, schema=name, node_id="n1", partitions=4, lease=lease)
            as eco,
            Postgres(dsn, refs.REGISTRY, schema=name, node=False, lease=lease) as client,
        ):  # fmt: skip
            assert eco.node is not None
            await until("n1 owns every partition", lambda: _owned_by(conn, name, "n1", 4))
            await client.send(refs.counter("c").bump(src="c", n=1, audit=refs.audit("a")))
            newer = VERSION + 1
            await conn.execute(
                f"UPDATE {quote_schema(name)}.meta SET value = $1 WHERE key = 'version'",
                str(newer),
            )
            moved = (
                f"schema {name!r} is at version {newer}, newer than this pachytype "
                f"(version {VERSION}); upgrade pachytype on this machine, or use another schema"
            )
            failure = await asyncio.wait_for(eco.node.failed(), 10)
            assert isinstance(failure, SchemaError) and str(failure) == moved
            await until("n1 hands every partition over", lambda: _owned_by(conn, name, None, 4))

            async def refuses(instance: Postgres) -> bool:
                try:
                    await instance.send(refs.counter("c").bump(src="c", n=2, audit=refs.audit("a")))
                except SchemaError as error:
                    assert str(error) == f"{moved}; this process no longer uses it"
                    return True
                return False

            await until("the client refuses to send", lambda: refuses(client))
            assert await refuses(eco)
    finally:
        await conn.close()


async def test_a_migration_fences_owners_that_are_not_live(schema: tuple[str, str]) -> None:
    # A node silent for longer than LIVE_WITHIN_S does not hold the upgrade
    # back, but a commit it prepared under its epoch is refused afterwards.
    dsn, name = schema
    s = quote_schema(name)
    conn = await asyncpg.connect(dsn)
    try:
        await _schema_at(conn, name, 4)
        await conn.execute(
            f"INSERT INTO {s}.nodes (node_id, fingerprint, host, pid, heartbeat_at) "
            f"VALUES ('gone', 'f', 'h', 1, now() - $1 * interval '1 second')",
            LIVE_WITHIN_S + 1,
        )
        await conn.execute(
            f"UPDATE {s}.leases SET owner = 'gone', epoch = 7, expires_at = now() - interval '1 s' "
            f"WHERE partition < 2"
        )
        await conn.execute(
            f"UPDATE {s}.leases SET owner = 'quiet', epoch = 3, "
            f"expires_at = now() + interval '1 h' WHERE partition = 3"
        )
        with pytest.raises(SchemaError) as info:
            await migrate(conn, name, 4)
        assert "1 member of an older pachytype is live: node quiet (holding 1 partition, " in (
            str(info.value)
        )
        assert await current_version(conn, name) == 4
        await conn.execute(f"UPDATE {s}.leases SET expires_at = now() WHERE partition = 3")
        assert await migrate(conn, name, 4) == 4
        rows = await conn.fetch(f"SELECT partition, owner, epoch FROM {s}.leases ORDER BY 1")
        assert [tuple(r) for r in rows] == [
            (0, "gone", 8),
            (1, "gone", 8),
            (2, None, 0),
            (3, "quiet", 4),
        ]
    finally:
        await conn.close()


async def _owned_by(conn: asyncpg.Connection, schema: str, owner: str | None, n: int) -> bool:
    return list((await lease_owners(conn, schema)).values()) == [owner] * n


async def _schema_at(conn: asyncpg.Connection, schema: str, version: int) -> None:
    """`schema` as a library of `version` made it, with 4 partitions."""
    s = quote_schema(schema)
    await conn.execute(f"CREATE SCHEMA {s}")
    for step in MIGRATIONS[:version]:
        for statement in step(s):
            await conn.execute(statement)
    await conn.execute(
        f"INSERT INTO {s}.meta (key, value) VALUES ('partitions', '4'), ('version', $1)",
        str(version),
    )
    await conn.execute(f"INSERT INTO {s}.leases (partition) SELECT generate_series(0, 3)")
