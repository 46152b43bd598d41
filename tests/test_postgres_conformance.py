"""The shared conformance suite (tests/test_conformance.py), run on Postgres.

The `ecosystem` fixture is overridden here with one that opens `Postgres`
nodes, each ecosystem name in its own throwaway schema (dropped after the
test); every test function of the suite is collected again in this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pachytype._ecosystem import Ecosystem
from pachytype._pg_testing import drop_schemas, new_schema_name, require_postgres
from pachytype._registry import Registry
from pachytype.ecosystems._postgres import Postgres
from pachytype.testing import DURABLE, EcosystemFactory
from tests.test_conformance import *  # noqa: F403  (the suite's test functions)


@pytest.fixture
def ecosystem(tmp_path: Path) -> Iterator[EcosystemFactory]:
    """Postgres ecosystems: one schema per ecosystem name, dropped afterwards."""
    dsn = require_postgres()
    schemas: dict[Path, str] = {}

    def open_postgres(registry: Registry, directory: Path) -> Ecosystem:
        schema = schemas.setdefault(directory, new_schema_name())
        return Postgres(
            dsn,
            registry,
            schema=schema,
            partitions=8,
            lease=timedelta(seconds=2),
            poll_interval=0.1,
        )

    DURABLE.add("postgres")
    yield EcosystemFactory("postgres", tmp_path, open_postgres)
    drop_schemas(dsn, list(schemas.values()))
