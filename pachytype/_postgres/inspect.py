"""What `pachytype inspect --dsn` and `pachytype migrate --dsn` read and write
in a PostgreSQL schema: plain data from a few queries, for the commands to
decode and render (`_cli.inspect`, `_cli.migrate`).

Design note
-----------
* `read_schema` never changes anything: the summary (nodes, partitions,
  counts), then the first `limit` states, mailboxes, delayed messages, the
  last `limit` dead letters and the last `limit` events of each
  event-sourced type, as stored (bytes; decoding needs the registry and is
  the command's job). An event-sourced entity's row holds no state: it
  comes with its journal (latest snapshot and the events after it), which
  the command folds. Every list is bounded: a production mailbox may hold
  millions of rows (a journal is bounded by the entity's snapshots).
* `migrate_states` upgrades stored states to the registry's
  `state_version` in batches of one statement each (all or nothing).
  Each row is rewritten only if its `version` and `activations` are still
  the ones read, so a node that committed the entity in between wins (it
  wrote the current version itself) and stopping at any moment loses
  nothing: running it again continues with what is left. Nodes running a
  different registry must not be live (`foreign_nodes`): they would read a
  version they do not know and hold the entity.
* Connections are named `pachytype <schema> <command>` (the test helpers
  end such sessions) and connection failures become `ConnectionError`s
  whose text never holds a secret (`_postgres.dsn.connect_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
from attrs import define, field, frozen

from pachytype._codec import Codec
from pachytype._postgres.dsn import connect_error, redact
from pachytype._postgres.reads import read_journals
from pachytype._postgres.schema import (
    LIVE_WITHIN_S,
    VERSION,
    current_version,
    migrate,
    quote_schema,
)
from pachytype._registry import Registry
from pachytype._store import DeadRow, Journal

_NOW: Final = "extract(epoch FROM now())"
"""Now, as due times are stored (Unix seconds on the nodes' clocks; the system
clock unless a test gave them another)."""


@frozen
class NodeRow:
    """One node as its row says: alive means a heartbeat within its lease."""

    node_id: str
    host: str
    pid: int
    fingerprint: str
    heartbeat_at: datetime
    partitions: int
    kind: str = "node"
    """`node`, or `client` (a `node=False` process: it owns no partition)."""


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


@frozen
class StoredState:
    """One row of `states`, undecoded; `pending`: its mail that is due. An
    event-sourced entity has no `data`: its `journal` rebuilds it."""

    entity_type: str
    entity_id: str
    version: int
    data: bytes | None
    activations: int
    pending: int
    journal: Journal | None = None


@frozen
class StoredEvent:
    """One row of `events`, undecoded (positions count per entity type)."""

    entity_type: str
    position: int
    entity_id: str
    seq: int
    payload: bytes


@frozen
class StoredMail:
    """One delayed mailbox row, undecoded."""

    seq: int
    entity_type: str
    entity_id: str
    payload: bytes
    due_in_s: float


@frozen
class SchemaContents:
    """What `inspect --dsn` shows, undecoded."""

    summary: SchemaSummary
    fingerprint: str | None  # of the registry the last node to join ran
    states: tuple[StoredState, ...]
    mailboxes: tuple[tuple[str, str, int], ...]  # (type, id, messages due), fullest first
    delayed: tuple[StoredMail, ...]  # soonest first
    dead: tuple[DeadRow, ...]  # the last ones, oldest first
    entity_types: tuple[tuple[str, int], ...]  # (type, states stored)
    events: tuple[StoredEvent, ...] = ()  # the last ones of each type, in its order
    events_total: int = 0


async def connect(dsn: str, schema: str, command: str) -> asyncpg.Connection:
    """A connection for `command`, or a `ConnectionError` that names no secret."""
    try:
        return await asyncpg.connect(
            dsn,
            timeout=10,
            server_settings={"application_name": f"pachytype {schema} {command}"[:63]},
        )
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise ConnectionError(connect_error(dsn, error)) from None


async def summarize(conn: asyncpg.Connection, dsn: str, schema: str) -> SchemaSummary:
    """The summary of `schema` (its version is 0 if it has no tables)."""
    s = quote_schema(schema)
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
    kind = "kind" if version >= 3 else "'node'"  # clients have rows since version 3
    nodes = tuple(
        NodeRow(r[0], r[1], r[2], r[3], r[4], owners.get(r[0], 0), r[5])
        for r in await conn.fetch(
            f"SELECT node_id, host, pid, fingerprint, heartbeat_at, {kind} FROM {s}.nodes "
            f"ORDER BY node_id"
        )
    )
    counts = await conn.fetchrow(
        f"SELECT (SELECT count(*) FROM {s}.leases) AS partitions, "
        f"(SELECT count(*) FROM {s}.mailbox WHERE due IS NULL OR due <= {_NOW}) AS due, "
        f"(SELECT count(*) FROM {s}.mailbox WHERE due > {_NOW}) AS delayed, "
        f"(SELECT count(*) FROM {s}.states WHERE data IS NOT NULL) AS states, "
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


async def inspect_schema(dsn: str, schema: str) -> SchemaSummary:
    """The summary of `schema`, on a connection of its own."""
    conn = await connect(dsn, schema, "inspect")
    try:
        return await summarize(conn, dsn, schema)
    finally:
        await conn.close()


async def migrate_schema(dsn: str, schema: str, partitions: int = 64) -> tuple[int, int]:
    """Bring `schema`'s tables to this library's version on a connection of its
    own; returns `(version found, version now)`."""
    conn = await connect(dsn, schema, "migrate")
    try:
        return await migrate_tables(conn, schema, partitions), VERSION
    finally:
        await conn.close()


async def read_schema(
    conn: asyncpg.Connection, dsn: str, schema: str, limit: int
) -> SchemaContents:
    """Everything `inspect --dsn` shows (lists bounded by `limit`); the schema
    must exist (check `summary.version` of `summarize` first)."""
    s = quote_schema(schema)
    summary = await summarize(conn, dsn, schema)
    due = f"(m.due IS NULL OR m.due <= {_NOW})"
    journaled = summary.version >= 5  # events since version 5
    kept = (
        f"(data IS NOT NULL OR entity_type IN (SELECT entity_type FROM {s}.event_heads))"
        if journaled
        else "data IS NOT NULL"
    )
    rows = await conn.fetch(
        f"SELECT entity_type, entity_id, version, data, activations FROM {s}.states "
        f"WHERE {kept} ORDER BY entity_type, entity_id LIMIT $1",
        limit,
    )
    journals = await read_journals(conn, s, [(r[0], r[1]) for r in rows if r[3] is None])
    # One pass over the mailbox for the listed entities (it has no index by entity).
    pending = {
        (r[0], r[1]): r[2]
        for r in await conn.fetch(
            f"SELECT m.entity_type, m.entity_id, count(*) FROM {s}.mailbox m "
            f"JOIN unnest($1::text[], $2::text[]) AS k(t, e) "
            f"ON m.entity_type = k.t AND m.entity_id = k.e WHERE {due} GROUP BY 1, 2",
            [r[0] for r in rows],
            [r[1] for r in rows],
        )
    }
    states = tuple(
        StoredState(
            r[0],
            r[1],
            r[2],
            None if r[3] is None else bytes(r[3]),
            r[4],
            pending.get((r[0], r[1]), 0),
            journals.get((r[0], r[1]), Journal(None, [])) if r[3] is None else None,
        )
        for r in rows
    )
    mailboxes = tuple(
        (r[0], r[1], r[2])
        for r in await conn.fetch(
            f"SELECT entity_type, entity_id, count(*) AS n FROM {s}.mailbox m WHERE {due} "
            f"GROUP BY entity_type, entity_id ORDER BY n DESC, entity_type, entity_id LIMIT $1",
            limit,
        )
    )
    delayed = tuple(
        StoredMail(r[0], r[1], r[2], bytes(r[3]), r[4])
        for r in await conn.fetch(
            f"SELECT seq, entity_type, entity_id, payload, "
            f"due - {_NOW} FROM {s}.mailbox "
            f"WHERE due > {_NOW} ORDER BY due LIMIT $1",
            limit,
        )
    )
    dead = tuple(
        DeadRow(
            entity_type=r["entity_type"],
            id_text=r["entity_id"],
            message=bytes(r["message"]),
            error_type=r["error_type"],
            error=r["error"],
            traceback=r["traceback"],
            state=None if r["state"] is None else bytes(r["state"]),
            version=r["state_version"] or 0,
            recent=tuple(bytes(m) for m in r["recent"]),
            at=r["at"].timestamp(),
            id=r["seq"],
        )
        for r in reversed(
            await conn.fetch(
                f"SELECT seq, entity_type, entity_id, message, error_type, error, traceback, "
                f"state_version, state, recent, at FROM {s}.dead_letters "
                f"ORDER BY seq DESC LIMIT $1",
                limit,
            )
        )
    )
    fingerprint = await conn.fetchval(f"SELECT value FROM {s}.meta WHERE key = 'fingerprint'")
    types = tuple(
        (r[0], r[1])
        for r in await conn.fetch(
            f"SELECT entity_type, count(*) FROM {s}.states WHERE {kept} "
            f"GROUP BY entity_type ORDER BY 1"
        )
    )
    events: list[StoredEvent] = []
    total = 0
    if journaled:
        for etype, head in await conn.fetch(
            f"SELECT entity_type, position FROM {s}.event_heads ORDER BY 1"
        ):
            total += head  # positions are dense: the head counts the type's events
            latest = await conn.fetch(
                f"SELECT position, entity_id, seq, payload FROM {s}.events "
                f"WHERE entity_type = $1 ORDER BY position DESC LIMIT $2",
                etype,
                limit,
            )
            events.extend(
                StoredEvent(etype, r[0], r[1], r[2], bytes(r[3])) for r in reversed(latest)
            )
    return SchemaContents(
        summary, fingerprint, states, mailboxes, delayed, dead, types, tuple(events), total
    )


async def migrate_tables(conn: asyncpg.Connection, schema: str, partitions: int = 64) -> int:
    """Bring `schema`'s tables to this library's version (creating them if
    missing); returns the version found."""
    return await migrate(conn, schema, partitions)


async def foreign_nodes(
    conn: asyncpg.Connection, schema: str, fingerprint: str
) -> list[tuple[str, str]]:
    """`(node id, fingerprint)` of live nodes that run another registry."""
    rows = await conn.fetch(
        f"SELECT node_id, fingerprint FROM {quote_schema(schema)}.nodes "
        f"WHERE fingerprint <> $1 AND heartbeat_at > now() - $2 * interval '1 second' "
        f"ORDER BY node_id",
        fingerprint,
        LIVE_WITHIN_S,
    )
    return [(r[0], r[1]) for r in rows]


async def stored_types(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    """`entity type -> states stored`."""
    rows = await conn.fetch(
        f"SELECT entity_type, count(*) FROM {quote_schema(schema)}.states "
        f"WHERE data IS NOT NULL GROUP BY 1"
    )
    return {r[0]: r[1] for r in rows}


async def pending_states(conn: asyncpg.Connection, schema: str, registry: Registry) -> int:
    """How many stored states are below their entity type's `state_version`."""
    names = [t.name for t in registry]
    versions = [t.state_version for t in registry]
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM {quote_schema(schema)}.states s "
        f"JOIN unnest($1::text[], $2::int[]) AS t(name, version) "
        f"ON s.entity_type = t.name AND s.version < t.version WHERE s.data IS NOT NULL",
        names,
        versions,
    )
    return count


@define
class StateMigration:
    """What `migrate_states` did."""

    upgraded: int = 0
    overtaken: int = 0  # committed by a live node meanwhile (already current)
    failed: list[str] = field(factory=list)


async def migrate_batch(
    conn: asyncpg.Connection,
    schema: str,
    codec: Codec,
    entity_type: str,
    current: int,
    after: str,
    size: int,
    outcome: StateMigration,
) -> str | None:
    """Upgrade up to `size` states of `entity_type` with ids after `after` in
    one statement; returns the last id looked at (None when done)."""
    s = quote_schema(schema)
    rows = await conn.fetch(
        f"SELECT entity_id, data, version, activations FROM {s}.states "
        f"WHERE entity_type = $1 AND entity_id > $2 AND version < $3 AND data IS NOT NULL "
        f"ORDER BY entity_id LIMIT $4",
        entity_type,
        after,
        current,
        size,
    )
    if not rows:
        return None
    ids: list[str] = []
    data: list[bytes] = []
    versions: list[int] = []
    activations: list[int] = []
    for r in rows:
        try:
            id = codec.decode_id(entity_type, r["entity_id"])
            state = codec.decode_state(entity_type, id, bytes(r["data"]), r["version"])
            data.append(codec.encode_state(entity_type, state))
        except Exception as error:
            outcome.failed.append(f"{entity_type} {r['entity_id']!r}: {error}")
            continue
        ids.append(r["entity_id"])
        versions.append(r["version"])
        activations.append(r["activations"])
    if ids:
        status = await conn.execute(
            f"UPDATE {s}.states AS st SET data = u.d, version = $6 "
            f"FROM unnest($2::text[], $3::bytea[], $4::int[], $5::bigint[]) AS u(e, d, v, a) "
            f"WHERE st.entity_type = $1 AND st.entity_id = u.e AND st.version = u.v "
            f"AND st.activations = u.a",
            entity_type,
            ids,
            data,
            versions,
            activations,
            current,
        )
        done = int(status.split()[-1])
        outcome.upgraded += done
        outcome.overtaken += len(ids) - done
    last: str = rows[-1]["entity_id"]
    return last


async def migrate_states(
    conn: asyncpg.Connection,
    schema: str,
    registry: Registry,
    size: int,
    progress: Callable[[int], None] = lambda _n: None,
) -> StateMigration:
    """Upgrade every stored state of the registry's entity types to their
    `state_version`, `size` per statement; `progress(n)` after each batch."""
    codec = Codec(registry)
    outcome = StateMigration()
    for etype in registry:
        after: str | None = ""
        while after is not None:
            before = outcome.upgraded + outcome.overtaken + len(outcome.failed)
            after = await migrate_batch(
                conn, schema, codec, etype.name, etype.state_version, after, size, outcome
            )
            progress(outcome.upgraded + outcome.overtaken + len(outcome.failed) - before)
    return outcome
