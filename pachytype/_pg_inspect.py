"""What `pachytype inspect` shows for a PostgreSQL schema, and `migrate` for a
DSN: plain data read with a few queries, for the commands to render.

`inspect_schema(dsn, schema)` never changes anything; `migrate_schema`
brings the tables to this library's version (see `_pg_schema`).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from attrs import frozen

from pachytype._pg_dsn import redact
from pachytype._pg_schema import VERSION, current_version, migrate, quote_schema


@frozen
class NodeRow:
    """One node as its row says: alive means a heartbeat within its lease."""

    node_id: str
    host: str
    pid: int
    fingerprint: str
    heartbeat_at: datetime
    partitions: int


@frozen
class SchemaSummary:
    """A PostgreSQL ecosystem at a glance."""

    dsn: str  # redacted
    schema: str
    version: int
    partitions: int
    unowned: int
    nodes: tuple[NodeRow, ...]
    mail_due: int
    mail_delayed: int
    states: int
    dead_letters: int


async def inspect_schema(dsn: str, schema: str) -> SchemaSummary:
    """Read the summary of `schema` (its version is 0 if it has no tables)."""
    s = quote_schema(schema)
    conn = await asyncpg.connect(dsn)
    try:
        version = await current_version(conn, schema)
        if version == 0:
            return SchemaSummary(redact(dsn), schema, 0, 0, 0, (), 0, 0, 0, 0)
        owners = {
            r["owner"]: r["n"]
            for r in await conn.fetch(
                f"SELECT owner, count(*) AS n FROM {s}.leases "
                f"WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner"
            )
        }
        nodes = tuple(
            NodeRow(r[0], r[1], r[2], r[3], r[4], owners.get(r[0], 0))
            for r in await conn.fetch(
                f"SELECT node_id, host, pid, fingerprint, heartbeat_at FROM {s}.nodes "
                f"ORDER BY node_id"
            )
        )
        counts = await conn.fetchrow(
            f"SELECT (SELECT count(*) FROM {s}.leases) AS partitions, "
            f"(SELECT count(*) FROM {s}.mailbox "
            f" WHERE deliver_at IS NULL OR deliver_at <= now()) AS due, "
            f"(SELECT count(*) FROM {s}.mailbox WHERE deliver_at > now()) AS delayed, "
            f"(SELECT count(*) FROM {s}.states) AS states, "
            f"(SELECT count(*) FROM {s}.dead_letters) AS dead"
        )
        return SchemaSummary(
            dsn=redact(dsn),
            schema=schema,
            version=version,
            partitions=counts["partitions"],
            unowned=counts["partitions"] - sum(owners.values()),
            nodes=nodes,
            mail_due=counts["due"],
            mail_delayed=counts["delayed"],
            states=counts["states"],
            dead_letters=counts["dead"],
        )
    finally:
        await conn.close()


async def migrate_schema(dsn: str, schema: str, partitions: int = 64) -> tuple[int, int]:
    """Bring `schema` to this library's version; returns `(found, now)`."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await migrate(conn, schema, partitions)
        return found, VERSION
    finally:
        await conn.close()
