"""Test support for the PostgreSQL ecosystem: find the test server, make and
drop throwaway schemas.

Tests read `PACHYTYPE_TEST_DSN` (default
`postgresql://postgres@127.0.0.1:5432/test`). Without a reachable server
they skip, saying why; under `CI=true` they fail instead, so a CI job that
lost its database cannot pass by skipping everything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype._postgres.dsn import redact
from pachytype._postgres.schema import quote_schema

DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"

_probe: dict[str, str | None] = {}


def postgres_test_dsn() -> str:
    """The DSN tests use."""
    return os.environ.get("PACHYTYPE_TEST_DSN", DEFAULT_DSN)


def _run(coro_factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on a private loop in a thread (callable from any context)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def unreachable_reason(dsn: str) -> str | None:
    """Why the server at `dsn` cannot be used (None: it can). Probed once."""
    if dsn not in _probe:

        async def probe() -> None:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close()

        try:
            _run(probe)
            _probe[dsn] = None
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            _probe[dsn] = f"no PostgreSQL at {redact(dsn)} ({type(error).__name__}: {error})"
    return _probe[dsn]


def require_postgres() -> str:
    """The test DSN; skip the test if no server answers (fail under CI=true)."""
    dsn = postgres_test_dsn()
    reason = unreachable_reason(dsn)
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires it (set PACHYTYPE_TEST_DSN)")
        pytest.skip(f"{reason}; set PACHYTYPE_TEST_DSN to run the PostgreSQL tests")
    return dsn


def new_schema_name(prefix: str = "pt_test") -> str:
    """A fresh, unique schema name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schemas(dsn: str, schemas: list[str]) -> None:
    """Drop `schemas` (and everything in them), from any context."""

    async def drop() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"lock_timeout": "10s"})
        try:
            for schema in schemas:
                # Sessions of this schema's nodes left by a failed test would
                # hold locks the DROP waits for: end them first.
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                    f"pachytype {schema} %",
                )
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE")
        finally:
            await conn.close()

    if schemas:
        _run(drop)


def spawn_node(
    dsn: str,
    schema: str,
    registry: str,
    *,
    node_id: str,
    lease: float,
    partitions: int,
    log_dir: Path,
    workers: int = 2,
) -> subprocess.Popen[bytes]:
    """Start `pachytype node` as a real OS process (DSN passed in the environment)."""
    env = {**os.environ, "PACHYTYPE_DSN": dsn}
    log = (log_dir / f"{node_id}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pachytype",
            "node",
            "--schema",
            schema,
            "--lease",
            str(lease),
            "--partitions",
            str(partitions),
            "--workers",
            str(workers),
            "--node-id",
            node_id,
            registry,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


def stop_processes(processes: list[subprocess.Popen[bytes]], grace: float = 10) -> None:
    """Resume (if paused) and SIGTERM each process; SIGKILL what is left after `grace` s."""
    for proc in processes:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def lease_owners(conn: asyncpg.Connection, schema: str) -> dict[int, str | None]:
    """`partition -> owner` as the lease table says now."""
    rows = await conn.fetch(f"SELECT partition, owner FROM {quote_schema(schema)}.leases")
    return {r["partition"]: r["owner"] for r in rows}


async def wait_for_owners(
    conn: asyncpg.Connection, schema: str, nodes: set[str], timeout: float
) -> float:
    """Wait until every partition is owned by one of `nodes`, evenly; return seconds waited."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        owners = await lease_owners(conn, schema)
        counts = [list(owners.values()).count(n) for n in nodes]
        if set(owners.values()) <= nodes and max(counts) - min(counts) <= 1:
            return loop.time() - started
        if loop.time() - started > timeout:
            raise TimeoutError(f"partitions not balanced over {sorted(nodes)}: {owners}")
        await asyncio.sleep(0.02)
