"""The library's own PostgreSQL tables, in a schema the user names, and their
versioned migrations.

Design note
-----------
* **Everything in one schema.** Every table lives in the schema given to
  `Postgres(..., schema=...)`, so several ecosystems share one database
  without seeing each other. The schema name is an identifier (it cannot be
  a query parameter), so it is checked against a strict pattern and quoted;
  every *value* in every query is a parameter.
* **Versioned, idempotent, concurrent-safe.** `MIGRATIONS[i]` takes the
  schema from version `i` to `i + 1`. `migrate` holds a transaction-scoped
  advisory lock (keyed by the schema name) while it reads the version and
  applies what is missing, so ten nodes starting at once apply each step
  exactly once; running it again is a no-op.
* **Never downgrade.** A database newer than this library is refused with
  the versions involved, instead of being half-understood: at open
  (`migrate`), at join and at every heartbeat (`check_not_newer`), so a
  node that meets a newer schema hands its partitions over and stops, and
  a process's operations raise (`_postgres/client.py`).
* **One library version per schema at a time.** The tables of version `v`
  are used only by libraries that write `v`: an older library's SQL names
  columns a later step drops (v5 drops `mailbox.deliver_at`: a v4 node then
  fails every batch and strands its partitions) and keeps rules a later
  step relies on (a v5 commit needs followers to write the lease row).
  Whenever the schema is older than this library, every live member runs
  an older library (one as new as this would have migrated it), so
  `migrate` refuses to take the schema past a live member (a heartbeat
  within `LIVE_WITHIN_S`, or an unexpired lease), naming each and saying
  what to do. It checks and migrates holding the join lock too (no member
  joins in between), and moves the epoch of every owned lease, so a commit
  prepared under the old tables (by a process paused past `LIVE_WITHIN_S`)
  is refused. Upgrading pachytype across a schema version therefore stops
  the old processes first (SIGTERM hands partitions over; mail waits in
  the database); a rolling deploy of the registry needs no such stop.
  Only versions are checked: a change of what members' SQL assumes of the
  tables or of each other needs a new version even without DDL (a step of
  no statements).

Tables (in `<schema>`):

=============  ==============================================================
meta           key/value: schema version, partition count, fingerprint
nodes          live nodes and clients: id, kind, registry fingerprint and
               description digest, last heartbeat
registries     the description of each registry that ran (`_compat`), by digest
leases         one row per partition: owner node, epoch, expiry, writers (the
               digests of every registry that owned it)
mailbox        pending messages (the outbox is the mailbox: one database), and
               delayed ones with their due time
states         committed state of each entity, with its activation count
dedupe         ids of consumed outside messages (a resent id is dropped),
               with the reply of a `call` (the state after it, or the error)
replies        replies for callers of schema version 1 (kept for them)
watches        entities someone follows, and how far each follower has read
history        the committed states of followed entities, numbered by the
               entity's activation count (followers read them from here)
dead_letters   messages whose activation raised, with error and context
attempts       runs of mail whose owner died while it may have been running
events         event-sourced entities' events, by log position
event_heads    the last log position given, per entity type
snapshots      event-sourced entities' latest snapshots
=============  ==============================================================

Version 2 (the interactive path): a call's row names its caller's reply
channel and key (`mailbox.reply_to`, `reply_key`); the reply is kept with
the dedupe id (so a caller that missed the notification reads it); states
carry their entity's recent messages (dead letters keep them across
restarts and takeovers); followers read `history`, notifications are only
hints.

Version 3 (rolling deploys, `_postgres/deploy.py`): clients have membership rows
too (`nodes.kind`), every member names the description of its registry
(`nodes.digest` -> `registries`), and each lease row lists the registries
that have owned its partition (`leases.writers`): only a node that reads
all their states may own it.

Version 4 (keyed timers, `pachytype._core.timers`): a delayed row may carry
its timer's key (`mailbox.timer_key`); a later keyed row, or a cancel,
deletes the pending (`deliver_at > now()`) row of the same entity and key.

Version 5 (nodes run the shared durable runtime over `_postgres/store.py`): mail
rows carry the id of the transaction that inserted them (`ins_xid`: a
claim reads what was inserted since its previous snapshot) and a due time
on the runtime's clock (`due`, Unix seconds; `deliver_at` is gone: a keyed row replaces the
pending row, `due` after now on the clock, of its entity and key); a state
row may hold only recent messages (`data` NULL: the entity has no state
yet); `sessions` numbers node sessions (each numbers its own messages in a
range of its own); `attempts` counts the runs of mail whose owner died;
`events`, `event_heads` (the next log position of each type, taken under
its row lock so positions follow commit order) and `snapshots` hold
event-sourced entities.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._core.timers import DROPPED
from pachytype._errors import PachytypeError

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class SchemaError(PachytypeError):
    """The database schema cannot be used by this version of pachytype."""


def quote_schema(schema: str) -> str:
    """`schema` as a quoted SQL identifier, after checking it is a plain name."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"schema name {schema!r} is not a plain lower-case identifier "
            f"(letters, digits, underscores, at most 63 characters, not starting "
            f"with a digit); choose one like 'pachytype' or 'bank_prod'"
        )
    return f'"{schema}"'


def _v1(s: str) -> list[str]:
    return [
        f"CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
        f"""CREATE TABLE {s}.nodes (
            node_id text PRIMARY KEY,
            fingerprint text NOT NULL,
            host text NOT NULL,
            pid int NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {s}.leases (
            partition int PRIMARY KEY,
            owner text,
            epoch bigint NOT NULL DEFAULT 0,
            expires_at timestamptz NOT NULL DEFAULT '-infinity')""",
        f"""CREATE TABLE {s}.mailbox (
            seq bigserial NOT NULL,
            msg_id uuid NOT NULL,
            partition int NOT NULL,
            entity_type text NOT NULL,
            entity_id text NOT NULL,
            payload bytea NOT NULL,
            deliver_at timestamptz,
            outside boolean NOT NULL DEFAULT false,
            reply boolean NOT NULL DEFAULT false,
            PRIMARY KEY (partition, seq))""",
        f"CREATE INDEX mailbox_due ON {s}.mailbox (partition, deliver_at)"
        f" WHERE deliver_at IS NOT NULL",
        f"""CREATE TABLE {s}.states (
            entity_type text NOT NULL,
            entity_id text NOT NULL,
            partition int NOT NULL,
            version int NOT NULL,
            data bytea NOT NULL,
            activations bigint NOT NULL,
            PRIMARY KEY (entity_type, entity_id)) WITH (fillfactor = 80)""",
        f"""CREATE TABLE {s}.dedupe (
            msg_id uuid PRIMARY KEY,
            consumed_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {s}.replies (
            msg_id uuid PRIMARY KEY,
            version int,
            data bytea,
            error_type text,
            error text,
            created_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {s}.watches (
            watch_id uuid PRIMARY KEY,
            node_id text NOT NULL,
            entity_type text NOT NULL,
            entity_id text NOT NULL)""",
        f"CREATE INDEX watches_entity ON {s}.watches (entity_type, entity_id)",
        f"""CREATE TABLE {s}.dead_letters (
            seq bigserial PRIMARY KEY,
            entity_type text NOT NULL,
            entity_id text NOT NULL,
            message bytea NOT NULL,
            error_type text NOT NULL,
            error text NOT NULL,
            traceback text NOT NULL,
            state_version int,
            state bytea,
            recent bytea[] NOT NULL,
            at timestamptz NOT NULL DEFAULT now())""",
    ]


def _v2(s: str) -> list[str]:
    return [
        f"ALTER TABLE {s}.mailbox ADD COLUMN reply_to text, ADD COLUMN reply_key bytea",
        f"ALTER TABLE {s}.dedupe ADD COLUMN version int, ADD COLUMN data bytea, "
        f"ADD COLUMN error_type text, ADD COLUMN error text",
        f"ALTER TABLE {s}.states ADD COLUMN recent bytea",
        f"ALTER TABLE {s}.watches ADD COLUMN position bigint NOT NULL DEFAULT 0, "
        f"ADD COLUMN at timestamptz NOT NULL DEFAULT now()",
        f"""CREATE TABLE {s}.history (
            entity_type text NOT NULL,
            entity_id text NOT NULL,
            activations bigint NOT NULL,
            version int NOT NULL,
            data bytea NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (entity_type, entity_id, activations))""",
    ]


def _v3(s: str) -> list[str]:
    return [
        f"ALTER TABLE {s}.nodes ADD COLUMN kind text NOT NULL DEFAULT 'node', "
        f"ADD COLUMN digest text",
        f"""CREATE TABLE {s}.registries (
            digest text PRIMARY KEY,
            description text NOT NULL,
            at timestamptz NOT NULL DEFAULT now())""",
        f"ALTER TABLE {s}.leases ADD COLUMN writers text[] NOT NULL DEFAULT '{{}}'",
    ]


def _v4(s: str) -> list[str]:
    return [
        f"ALTER TABLE {s}.mailbox ADD COLUMN timer_key text",
        f"CREATE INDEX mailbox_timer ON {s}.mailbox (entity_type, entity_id, timer_key)"
        f" WHERE timer_key IS NOT NULL",
    ]


def _v5(s: str) -> list[str]:
    return [
        # Claims read rows inserted since the last claim's snapshot (`_postgres/claims.py`).
        f"ALTER TABLE {s}.mailbox ADD COLUMN ins_xid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
        f"ADD COLUMN due float8",
        f"UPDATE {s}.mailbox SET due = extract(epoch FROM deliver_at) WHERE deliver_at IS NOT NULL",
        f"CREATE INDEX mailbox_inserted ON {s}.mailbox (partition, ins_xid)",
        f"DROP INDEX {s}.mailbox_due",
        f"ALTER TABLE {s}.mailbox DROP COLUMN deliver_at",
        f"ALTER TABLE {s}.states ALTER COLUMN data DROP NOT NULL",
        f"CREATE SEQUENCE {s}.sessions",
        f"CREATE TABLE {s}.attempts (seq bigint PRIMARY KEY, n int NOT NULL)",
        # Positions count per entity type (`event_heads`): the key is both.
        f"""CREATE TABLE {s}.events (
            entity_type text NOT NULL,
            position bigint NOT NULL,
            entity_id text NOT NULL,
            seq bigint NOT NULL,
            payload bytea NOT NULL,
            PRIMARY KEY (entity_type, position),
            UNIQUE (entity_type, entity_id, seq))""",
        f"CREATE TABLE {s}.event_heads (entity_type text PRIMARY KEY, position bigint NOT NULL)",
        f"""CREATE TABLE {s}.snapshots (
            entity_type text NOT NULL,
            entity_id text NOT NULL,
            seq bigint NOT NULL,
            state bytea NOT NULL,
            version int NOT NULL,
            PRIMARY KEY (entity_type, entity_id))""",
    ]


MIGRATIONS: Final = (_v1, _v2, _v3, _v4, _v5)
"""`MIGRATIONS[i](quoted_schema)`: the statements from version i to i + 1."""

VERSION: Final = len(MIGRATIONS)
"""The schema version this library writes."""


LIVE_WITHIN_S: Final = 30.0
"""A member whose heartbeat is this recent counts as live for `migrate`
(whatever its own lease; a killed one stops counting this long after)."""


def lock_key(schema: str) -> int:
    """The advisory-lock key guarding migrations of `schema` (stable across processes)."""
    return zlib.crc32(f"pachytype migrate {schema}".encode())


def join_lock_key(schema: str) -> int:
    """The advisory-lock key under which members of `schema` join (and a
    migration checks that none is live): the same in every version."""
    return zlib.crc32(f"pachytype join {schema}".encode())


async def current_version(conn: asyncpg.Connection, schema: str) -> int:
    """The schema's version (0 if it has no pachytype tables yet)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.meta")
    if not exists:
        return 0
    s = quote_schema(schema)
    value = await conn.fetchval(f"SELECT value FROM {s}.meta WHERE key = 'version'")
    return int(value) if value is not None else 0


async def migrate(conn: asyncpg.Connection, schema: str, partitions: int) -> int:
    """Bring `schema` to `VERSION`; create it with `partitions` lease rows if new.

    Returns the version found before migrating. Safe to run from many
    processes at once (advisory lock) and again and again (idempotent).
    """
    s = quote_schema(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        found = await current_version(conn, schema)
        if found > VERSION:
            raise SchemaError(newer_than_library(schema, found))
        if 0 < found < VERSION:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", join_lock_key(schema))
            await _refuse_live_members(conn, schema, found)
            await _fence_owners(conn, s)
        for step in MIGRATIONS[found:]:
            for statement in step(s):
                await conn.execute(statement)
        if found == 0:
            await conn.execute(
                f"INSERT INTO {s}.meta (key, value) VALUES ('partitions', $1)", str(partitions)
            )
            await conn.execute(
                f"INSERT INTO {s}.leases (partition) SELECT generate_series(0, $1::int - 1)",
                partitions,
            )
        await conn.execute(
            f"INSERT INTO {s}.meta (key, value) VALUES ('version', $1) "
            f"ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            str(VERSION),
        )
    return found


def newer_than_library(schema: str, found: int) -> str:
    """Why this library must not use `schema`, at version `found` > `VERSION`."""
    return (
        f"schema {schema!r} is at version {found}, newer than this pachytype "
        f"(version {VERSION}); upgrade pachytype on this machine, or use another schema"
    )


async def check_not_newer(conn: asyncpg.Connection, schema: str) -> None:
    """Raise `SchemaError` if `schema` was migrated past this library (a newer
    pachytype took it over since this process opened it)."""
    s = quote_schema(schema)
    value = await conn.fetchval(f"SELECT value FROM {s}.meta WHERE key = 'version'")
    if value is not None and int(value) > VERSION:
        raise SchemaError(newer_than_library(schema, int(value)))


_SHOWN: Final = 10
"""Live members named in a refused migration (the rest are counted)."""


async def _refuse_live_members(conn: asyncpg.Connection, schema: str, found: int) -> None:
    """Raise `SchemaError` naming the live members of `schema` (all of them run
    the library of version `found`, older than this one)."""
    s = quote_schema(schema)
    kind = "n.kind" if found >= 3 else "'node'"  # clients have rows since version 3
    rows = await conn.fetch(
        f"WITH held AS (SELECT owner, count(*) AS n FROM {s}.leases "
        f"WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner) "
        f"SELECT coalesce(n.node_id, h.owner) AS id, coalesce({kind}, 'node') AS kind, "
        f"n.host, n.pid, extract(epoch FROM now() - n.heartbeat_at)::float8 AS silent, "
        f"coalesce(h.n, 0) AS held FROM {s}.nodes n FULL JOIN held h ON h.owner = n.node_id "
        f"WHERE n.heartbeat_at > now() - $1 * interval '1 second' OR h.n IS NOT NULL "
        f"ORDER BY 1",
        LIVE_WITHIN_S,
    )
    if not rows:
        return
    named = [_member(r) for r in rows[:_SHOWN]]
    if len(rows) > _SHOWN:
        named.append(f"and {len(rows) - _SHOWN} more")
    raise SchemaError(
        f"schema {schema!r} is at version {found} and this pachytype writes version "
        f"{VERSION}, but {len(rows)} member{'s' if len(rows) > 1 else ''} of an older "
        f"pachytype {'are' if len(rows) > 1 else 'is'} live: {'; '.join(named)}. They would "
        f"go on running version-{found} SQL against version-{VERSION} tables, so nothing was "
        f"migrated. Stop every process of the older pachytype first (SIGTERM hands a node's "
        f"partitions over; mail waits in the database), then start this version; a process "
        f"killed without SIGTERM counts as live until {LIVE_WITHIN_S:.0f} s after its last "
        f"heartbeat (and until its leases expire)"
    )


def _member(row: asyncpg.Record) -> str:
    held = f"holding {row['held']} partition{'s' if row['held'] > 1 else ''}"
    if row["host"] is None:  # a lease whose owner has no row
        return f"node {row['id']} ({held}, no membership row)"
    leases = f", {held}" if row["held"] else ""
    return (
        f"{row['kind']} {row['id']} (host {row['host']}, pid {row['pid']}, last heartbeat "
        f"{row['silent']:.1f} s ago{leases})"
    )


async def _fence_owners(conn: asyncpg.Connection, s: str) -> None:
    """Move the epoch of every owned lease (owners stay, so their takers treat
    the mail as a dead owner's): a commit prepared before the migration, by a
    process paused past `LIVE_WITHIN_S`, is refused. `FOR UPDATE` waits for
    a commit still holding its lease rows."""
    await conn.execute(f"SELECT 1 FROM {s}.leases WHERE owner IS NOT NULL FOR UPDATE")
    await conn.execute(f"UPDATE {s}.leases SET epoch = epoch + 1 WHERE owner IS NOT NULL")


async def stored_partitions(conn: asyncpg.Connection, schema: str) -> int:
    """The partition count the schema was created with."""
    s = quote_schema(schema)
    value = await conn.fetchval(f"SELECT value FROM {s}.meta WHERE key = 'partitions'")
    if value is None:
        raise SchemaError(f"schema {schema!r} has no partition count; run `pachytype migrate`")
    return int(value)


def replaced_timers(s: str, types: str, ids: str, keys: str, now: str) -> str:
    """A CTE (`tk`) deleting the pending keyed timers named by three parallel
    text arrays (`types`, `ids`, `keys`: parameters; rows with a null key are
    skipped): rule 3 of `pachytype._core.timers` in SQL. Pending means not due
    yet (`due` after `now`, a parameter: the writer's clock). An owner holding
    one armed learns of its replacement by claiming the new row; one cancelled
    this way is missed by its owner's commit when it falls due, which is then
    refused and reloaded (`pachytype._postgres.commit`). A removed timer that was a
    `call` gets its answer (`tkd`): the error `DROPPED`, read by its caller."""
    return (
        f"tk AS (DELETE FROM {s}.mailbox WHERE ctid IN (SELECT x.ctid FROM {s}.mailbox x "
        f"JOIN (SELECT DISTINCT * FROM unnest({types}::text[], {ids}::text[], {keys}::text[]) "
        f"AS u(t, e, k) WHERE u.k IS NOT NULL) AS u "
        f"ON x.entity_type = u.t AND x.entity_id = u.e AND x.timer_key = u.k "
        f"WHERE x.due > {now}::float8 FOR UPDATE OF x SKIP LOCKED) RETURNING msg_id, reply), "
        f"{dropped_answers(s)}"
    )


def dropped_answers(s: str) -> str:
    """A CTE (`tkd`) answering, with the error `DROPPED`, every `call` among the
    timers a CTE `tk` removed (`RETURNING msg_id, reply`), so its caller stops
    waiting (and does not take the missing row for a lost commit)."""
    return (
        f"tkd AS (INSERT INTO {s}.dedupe (msg_id, error_type, error) "
        f"SELECT msg_id, '{DROPPED}', '' FROM tk WHERE reply ON CONFLICT DO NOTHING)"
    )
