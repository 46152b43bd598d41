"""Fixtures shared by the PostgreSQL tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres


@pytest.fixture
async def schema() -> AsyncIterator[tuple[str, str]]:
    """A DSN and a fresh schema name; the schema is dropped after the test
    (test_rolling.py keeps its own, with its name prefix)."""
    dsn = require_postgres()
    name = new_schema_name()
    yield dsn, name
    drop_schemas(dsn, [name])
