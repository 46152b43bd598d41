"""What a store reads and writes, in SQL: recovery at open, one group commit
per transaction, states, journals, events and dead letters."""

from __future__ import annotations

import functools
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, Final

from pachytype._codec import storable_text
from pachytype._sqlite.schema import transaction
from pachytype._store import (
    CommitBatch,
    DeadRow,
    EntityKey,
    EntityRow,
    Journal,
    LogRow,
    MailRow,
    Recovery,
    StoredState,
    TimerRow,
)

_READ_CHUNK: Final = 500
"""Ids per `IN (...)` query when loading states."""

_ROWS_PER_STATEMENT: Final = (128, 16)
"""Sizes of the multi-row statements `insert_rows` runs, largest first (at
most 128 x 5 values: under the 999 bound of older SQLite builds)."""

_INSERT_MAIL: Final = ("INSERT INTO mailbox VALUES ", "(?, ?, ?, ?)", "")

_UPSERT_ENTITY: Final = (
    "INSERT INTO entities (etype, eid, state, version, consumed) VALUES ",
    "(?, ?, ?, ?, ?)",
    " ON CONFLICT (etype, eid) DO UPDATE SET "
    "state = coalesce(excluded.state, state), "
    "version = CASE WHEN excluded.state IS NULL THEN version ELSE excluded.version END, "
    "consumed = max(consumed, excluded.consumed)",
)
"""A turn's row (no recent messages: they go in rows of their own,
`_UPSERT_RECENT_ONLY`), as (head, one row's marks, tail) for `insert_rows`. Its own
statement, so the hot path binds no NULL for them (see `write` on binding)."""

_UPSERT_RECENT: Final = (
    "INSERT INTO entities (etype, eid, state, version, consumed, recent) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (etype, eid) DO UPDATE SET "
    "state = coalesce(excluded.state, state), "
    "version = CASE WHEN excluded.state IS NULL THEN version ELSE excluded.version END, "
    "consumed = max(consumed, excluded.consumed), "
    "recent = excluded.recent"
)
"""A row that carries recent messages (they replace the stored ones)."""

_UPSERT_RECENT_ONLY: Final = (
    "INSERT INTO entities (etype, eid, state, version, consumed, recent) VALUES ",
    "(?, ?, NULL, 0, 0, ?)",
    " ON CONFLICT (etype, eid) DO UPDATE SET recent = excluded.recent",
)
"""A row that changes only the recent messages (the runtime writes thousands
at once: `pachytype._runtime.durable.recent`), for `insert_rows`."""


def recover(conn: sqlite3.Connection) -> Recovery:
    """Unconsumed mail (id order), pending timers, and the next free id."""
    mail: list[MailRow] = conn.execute(
        "SELECT m.id, m.etype, m.eid, m.payload FROM mailbox m "
        "LEFT JOIN entities e ON e.etype = m.etype AND e.eid = m.eid "
        "WHERE e.consumed IS NULL OR m.id > e.consumed ORDER BY m.id"
    ).fetchall()
    timers: list[TimerRow] = conn.execute(
        "SELECT id, etype, eid, payload, due, tkey FROM timers ORDER BY id"
    ).fetchall()
    top = conn.execute(
        "SELECT max(coalesce((SELECT max(id) FROM mailbox), 0), "
        "coalesce((SELECT max(id) FROM timers), 0), "
        "coalesce((SELECT max(consumed) FROM entities), 0))"
    ).fetchone()[0]
    suspects: dict[int, int] = {}
    running = conn.execute("SELECT value FROM meta WHERE key = 'running'").fetchone()
    if running is not None and running[0] == "1":  # the last session did not close
        attempts = dict(conn.execute("SELECT id, n FROM attempts").fetchall())
        suspects = {row[0]: attempts.get(row[0], 0) for row in mail}
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('running', '1')")
    return Recovery(next_id=int(top) + 1, mail=mail, timers=timers, suspects=suspects)


def mark_closed(conn: sqlite3.Connection) -> None:
    """Record a clean close: the next session has no suspect mail."""
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('running', '0')")
        conn.execute("DELETE FROM attempts")


def write(conn: sqlite3.Connection, batch: CommitBatch) -> None:
    """Apply one group commit in one transaction.

    The hot rows (mail, turns) go in by multi-row statements (`insert_rows`)
    and bind their blobs as `bytearray`: the sqlite3 module passes `bytes`
    and None through its adapter lookup, which builds and drops an
    AttributeError per value (about a tenth of an insert's instructions); a
    bytearray is bound directly, as the same BLOB.
    """
    with transaction(conn):
        if batch.attempted:
            conn.executemany(
                "INSERT INTO attempts VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1",
                [(i,) for i in batch.attempted],
            )
        if batch.mail:
            flat: list[Any] = list(chain.from_iterable(batch.mail))
            flat[3::4] = [bytearray(payload) for payload in flat[3::4]]
            insert_rows(conn, _INSERT_MAIL, flat, 4)
        if batch.entities:
            # Rows of one entity commute (each sets only what it carries).
            flat = []
            turns = 0
            for r in batch.entities:
                if r[5] is None:
                    state = r[2]
                    flat += (r[0], r[1], None if state is None else bytearray(state), r[3], r[4])
                    turns += 1
            if turns:
                insert_rows(conn, _UPSERT_ENTITY, flat, 5)
            if turns < len(batch.entities):
                _write_recent(conn, batch.entities)
        if batch.timers:
            conn.executemany("INSERT INTO timers VALUES (?, ?, ?, ?, ?, ?)", batch.timers)
        if batch.fired or batch.cancelled:
            conn.executemany(
                "DELETE FROM timers WHERE id = ?", [(i,) for i in (*batch.fired, *batch.cancelled)]
            )
        if batch.dead:
            conn.executemany(
                "INSERT INTO dead_letters (etype, eid, message, error_type, error, traceback, "
                "state, version, recent, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_dead_values(d) for d in batch.dead],
            )
        if batch.redelivered:
            conn.executemany(
                "DELETE FROM dead_letters WHERE id = ?", [(i,) for i in batch.redelivered]
            )
        if batch.forget_below is not None:
            conn.execute("DELETE FROM mailbox WHERE id < ?", (batch.forget_below,))
            conn.execute("DELETE FROM attempts WHERE id < ?", (batch.forget_below,))
        if batch.events:
            conn.executemany(
                "INSERT INTO events (etype, eid, seq, payload) VALUES (?, ?, ?, ?)", batch.events
            )
        if batch.snapshots:
            conn.executemany(
                "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)", batch.snapshots
            )
        if batch.forgotten:
            conn.executemany("DELETE FROM entities WHERE etype = ? AND eid = ?", batch.forgotten)


def _write_recent(conn: sqlite3.Connection, rows: list[EntityRow]) -> None:
    """The rows of `rows` that carry recent messages (most carry only them)."""
    only: list[Any] = []
    other: list[tuple[Any, ...]] = []
    for row in rows:
        recent = row[5]
        if recent is None:
            continue
        if row[2] is None and row[4] == 0:
            only += (row[0], row[1], bytearray(pack_blobs(recent)))
        else:
            other.append((*row[:5], pack_blobs(recent)))
    if only:
        insert_rows(conn, _UPSERT_RECENT_ONLY, only, 3)
    if other:
        conn.executemany(_UPSERT_RECENT, other)


def insert_rows(
    conn: sqlite3.Connection, statement: tuple[str, str, str], flat: list[Any], width: int
) -> None:
    """Run an INSERT, given as (head, one row's marks, tail), over the rows in
    `flat` (`width` values a row, in order), several rows a statement.

    `executemany` binds, steps and resets its statement once per row, and
    that costs about as much again as the row's own work: a mail row took
    2.4 us that way against 1.2-1.7 us by statements of 16 to 250 rows
    (the write alone, synchronous=OFF). The sizes are few (`_ROWS_PER_STATEMENT`,
    then one row a statement for the last few) so that each is prepared once
    and stays in the connection's statement cache. Rows go in in order,
    one after another, as `executemany` puts them: an ON CONFLICT clause sees
    the earlier rows of the same statement.
    """
    head, marks, tail = statement
    at, end = 0, len(flat)
    for rows in _ROWS_PER_STATEMENT:
        step = rows * width
        if end - at >= step:
            sql = _multi_row(head, marks, tail, rows)
            while end - at >= step:
                conn.execute(sql, flat[at : at + step])
                at += step
    if at < end:
        rest = flat[at:]
        conn.executemany(
            head + marks + tail, [rest[i : i + width] for i in range(0, len(rest), width)]
        )


@functools.cache
def _multi_row(head: str, marks: str, tail: str, rows: int) -> str:
    return head + ", ".join([marks] * rows) + tail


def read_journals(conn: sqlite3.Connection, keys: Sequence[EntityKey]) -> dict[EntityKey, Journal]:
    """Latest snapshot and later events of each of `keys` (absent: neither), in
    two queries per chunk of ids (entities about to run are loaded together)."""
    by_type: dict[str, list[str]] = {}
    for etype, eid in keys:
        by_type.setdefault(etype, []).append(eid)
    snapshots: dict[EntityKey, tuple[int, bytes, int]] = {}
    events: dict[EntityKey, list[tuple[int, bytes]]] = {}
    conn.execute("BEGIN")  # one snapshot of the database for every chunk
    try:
        for etype, eids in by_type.items():
            for at in range(0, len(eids), _READ_CHUNK):
                chunk = eids[at : at + _READ_CHUNK]
                marks = ", ".join("?" * len(chunk))
                for eid, seq, state, version in conn.execute(
                    f"SELECT eid, seq, state, version FROM snapshots "
                    f"WHERE etype = ? AND eid IN ({marks})",
                    (etype, *chunk),
                ):
                    snapshots[(etype, eid)] = (seq, state, version)
                # Entities without a snapshot: all their events, one query per
                # chunk; with one: a range read after it each (an index range,
                # never a scan of the events the snapshot covers).
                bare = [eid for eid in chunk if (etype, eid) not in snapshots]
                if bare:
                    marks = ", ".join("?" * len(bare))
                    for eid, seq, payload in conn.execute(
                        f"SELECT eid, seq, payload FROM events "
                        f"WHERE etype = ? AND eid IN ({marks}) ORDER BY eid, seq",
                        (etype, *bare),
                    ):
                        events.setdefault((etype, eid), []).append((seq, payload))
                for eid in chunk:
                    snapshot = snapshots.get((etype, eid))
                    if snapshot is not None:
                        found = conn.execute(
                            "SELECT seq, payload FROM events "
                            "WHERE etype = ? AND eid = ? AND seq > ? ORDER BY seq",
                            (etype, eid, snapshot[0]),
                        ).fetchall()
                        if found:
                            events[(etype, eid)] = found
    finally:
        conn.execute("COMMIT")
    return {key: Journal(snapshots.get(key), events.get(key, [])) for key in {*snapshots, *events}}


def read_events(
    conn: sqlite3.Connection, etype: str, eid: str | None, after: int, limit: int
) -> list[LogRow]:
    """Committed events of one entity after sequence number `after`, or of a
    whole type after log position `after`, in order."""
    if eid is not None:
        return conn.execute(
            "SELECT position, eid, seq, payload FROM events "
            "WHERE etype = ? AND eid = ? AND seq > ? ORDER BY seq LIMIT ?",
            (etype, eid, after, limit),
        ).fetchall()
    return conn.execute(
        "SELECT position, eid, seq, payload FROM events "
        "WHERE etype = ? AND position > ? ORDER BY position LIMIT ?",
        (etype, after, limit),
    ).fetchall()


def read_states(
    conn: sqlite3.Connection, keys: Sequence[EntityKey]
) -> dict[EntityKey, StoredState]:
    """Committed states of `keys`; entities without a stored state are absent."""
    by_type: dict[str, list[str]] = {}
    for etype, eid in keys:
        by_type.setdefault(etype, []).append(eid)
    found: dict[EntityKey, StoredState] = {}
    conn.execute("BEGIN")  # one read transaction for every chunk
    try:
        for etype, eids in by_type.items():
            for at in range(0, len(eids), _READ_CHUNK):
                chunk = eids[at : at + _READ_CHUNK]
                marks = ", ".join("?" * len(chunk))
                for eid, state, version, recent in conn.execute(
                    f"SELECT eid, state, version, recent FROM entities "
                    f"WHERE etype = ? AND eid IN ({marks}) "
                    f"AND (state IS NOT NULL OR recent IS NOT NULL)",
                    (etype, *chunk),
                ):
                    found[(etype, eid)] = (state, version, unpack_blobs(recent or b""))
    finally:
        conn.execute("COMMIT")
    return found


def read_dead(conn: sqlite3.Connection) -> list[DeadRow]:
    """Every dead letter, oldest first."""
    rows = conn.execute(
        "SELECT id, etype, eid, message, error_type, error, traceback, state, version, "
        "recent, at FROM dead_letters ORDER BY id"
    ).fetchall()
    return [
        DeadRow(
            id=r[0],
            entity_type=r[1],
            id_text=r[2],
            message=r[3],
            error_type=r[4],
            error=r[5],
            traceback=r[6],
            state=r[7],
            version=r[8],
            recent=unpack_blobs(r[9]),
            at=r[10],
        )
        for r in rows
    ]


def _dead_values(d: DeadRow) -> tuple[Any, ...]:
    return (
        d.entity_type,
        d.id_text,
        d.message,
        storable_text(d.error_type),
        storable_text(d.error),
        storable_text(d.traceback),
        d.state,
        d.version,
        pack_blobs(d.recent),
        d.at,
    )


def pack_blobs(blobs: Iterable[bytes]) -> bytes:
    """Several byte strings as one (each prefixed by its 4-byte length)."""
    parts: list[bytes] = []
    for b in blobs:
        parts += (len(b).to_bytes(4, "big"), b)
    return b"".join(parts)


def unpack_blobs(data: bytes) -> tuple[bytes, ...]:
    """The inverse of `pack_blobs`."""
    out = []
    at = 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        at += 4
        out.append(bytes(data[at : at + size]))
        at += size
    return tuple(out)
