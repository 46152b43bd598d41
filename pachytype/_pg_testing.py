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
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype._pg_dsn import redact
from pachytype._pg_schema import quote_schema

DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"

_probe: dict[str, str | None] = {}


def test_dsn() -> str:
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
    dsn = test_dsn()
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
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE")
        finally:
            await conn.close()

    if schemas:
        _run(drop)
