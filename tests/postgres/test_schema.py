"""The library's tables: created in the schema the user names, versioned,
idempotent and safe to migrate from many processes at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from pachytype import Postgres
from pachytype._postgres.inspect import inspect_schema, migrate_schema
from pachytype._postgres.schema import VERSION, SchemaError, current_version, migrate
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY


async def test_migrate_creates_every_table_in_the_named_schema(schema: tuple[str, str]) -> None:
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrate(conn, name, 8) == 0
        tables = {
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", name
            )
        }
        assert tables == {
            "meta",
            "nodes",
            "leases",
            "mailbox",
            "states",
            "dedupe",
            "replies",
            "watches",
            "history",
            "dead_letters",
            "registries",
            "attempts",
            "events",
            "event_heads",
            "snapshots",
        }
        assert await current_version(conn, name) == VERSION
        assert await conn.fetchval(f'SELECT count(*) FROM "{name}".leases') == 8
    finally:
        await conn.close()


async def test_migrating_again_changes_nothing(schema: tuple[str, str]) -> None:
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, name, 8)
        assert await migrate(conn, name, 8) == VERSION
        assert await conn.fetchval(f'SELECT count(*) FROM "{name}".leases') == 8
    finally:
        await conn.close()


async def test_many_processes_migrating_at_once_apply_each_step_once(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    conns = [await asyncpg.connect(dsn) for _ in range(6)]
    try:
        found = await asyncio.gather(*(migrate(c, name, 8) for c in conns))
        assert sorted(found) == [0] + [VERSION] * 5
        assert await conns[0].fetchval(f'SELECT count(*) FROM "{name}".leases') == 8
    finally:
        for c in conns:
            await c.close()


async def test_a_schema_newer_than_the_library_is_refused(schema: tuple[str, str]) -> None:
    dsn, name = schema
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, name, 8)
        await conn.execute(f"UPDATE \"{name}\".meta SET value = '99' WHERE key = 'version'")
        with pytest.raises(SchemaError) as info:
            await migrate(conn, name, 8)
        assert str(info.value) == (
            f"schema {name!r} is at version 99, newer than this pachytype (version {VERSION}); "
            f"upgrade pachytype on this machine, or use another schema"
        )
    finally:
        await conn.close()


async def test_the_partition_count_is_fixed_at_creation(schema: tuple[str, str]) -> None:
    dsn, name = schema
    async with Postgres(dsn, REGISTRY, schema=name, node=False, partitions=8):
        pass
    with pytest.raises(SchemaError, match="was created with 8 partitions, not 16"):
        async with Postgres(dsn, REGISTRY, schema=name, node=False, partitions=16):
            pass
    async with Postgres(dsn, REGISTRY, schema=name, node=False) as eco:
        assert eco.partitions == 8


def test_a_schema_name_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        Postgres("postgresql://x@localhost/db", REGISTRY, schema='x"; DROP TABLE users; --')
    assert "is not a plain lower-case identifier" in str(info.value)


async def test_inspect_summarises_nodes_partitions_and_mail(schema: tuple[str, str]) -> None:
    dsn, name = schema
    assert (await inspect_schema(dsn, name)).version == 0
    assert await migrate_schema(dsn, name, 8) == (0, VERSION)
    async with Postgres(dsn, REGISTRY, schema=name, node_id="i1") as eco:
        await eco.call(refs.tally(TallyId("a")).add(n=1))
        await eco.send(refs.log(1).append(value=1).after(timedelta(hours=1)))
        summary = await inspect_schema(dsn, name)
    assert summary.version == VERSION and summary.partitions == 8 and summary.unowned == 0
    assert [(n.node_id, n.partitions) for n in summary.nodes] == [("i1", 8)]
    assert (summary.mail_due, summary.mail_delayed, summary.states) == (0, 1, 1)
    assert summary.dead_letters == 0
