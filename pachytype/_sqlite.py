"""The SQLite adapter: LocalDisk's `Store` (stdlib sqlite3, WAL), plus the
synchronous file access `pachytype inspect` and `migrate` use.

Design note
-----------
* **One writer, proven.** `open` takes an exclusive `flock` on `<db>.lock`
  (released by the kernel when the process dies, even on SIGKILL); a second
  process, or a second `LocalDisk` on the same file, gets `StoreLockedError`
  naming the holder's pid. Readers (`inspect`) need no lock: WAL lets them
  read while the owner writes.
* **One transaction per group commit**, on the event loop's thread. A
  writer thread was tried and measured slower: the sqlite3 module releases
  and retakes the GIL around every row, and behind a busy loop each retake
  waits (the GIL convoy). Trade-off: the loop is blocked for each commit
  (about a millisecond here, fsync included; more on a slow disk).
  `synchronous=FULL` by default: a commit that returned survives power
  loss; `NORMAL` trades that for speed.
* **Consumed cursor.** `entities.consumed` is the highest message id the
  entity handled, written with its state. Mail at or below it is dead
  weight, skipped on recovery and deleted in bulk (`forget_below`), so the
  hot path never deletes row by row.
* Delayed messages live in `timers` until due; a fired timer's message
  moves to `mailbox` under a new id in the same transaction that deletes it.

Tables: `meta(key, value)`, `entities(etype, eid, state, version,
consumed)`, `mailbox(id, etype, eid, payload)`, `timers(id, etype, eid,
payload, due)`, `dead_letters(id, etype, eid, message, error_type, error,
traceback, state, version, recent, at)`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pachytype._errors import PachytypeError
from pachytype._store import (
    CommitBatch,
    DeadRow,
    EntityKey,
    MailRow,
    Recovery,
    StoredState,
    TimerRow,
)

SCHEMA_VERSION: Final = 1

_READ_CHUNK: Final = 500
"""Ids per `IN (...)` query when loading states."""

Synchronous = Literal["FULL", "NORMAL", "OFF"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    etype TEXT NOT NULL, eid TEXT NOT NULL, state BLOB, version INTEGER NOT NULL,
    consumed INTEGER NOT NULL, PRIMARY KEY (etype, eid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
    id INTEGER PRIMARY KEY, etype TEXT NOT NULL, eid TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY, etype TEXT NOT NULL, eid TEXT NOT NULL, payload BLOB NOT NULL,
    due REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, etype TEXT NOT NULL, eid TEXT NOT NULL,
    message BLOB NOT NULL, error_type TEXT NOT NULL, error TEXT NOT NULL,
    traceback TEXT NOT NULL, state BLOB, version INTEGER NOT NULL, recent BLOB NOT NULL,
    at REAL NOT NULL);
"""

_UPSERT_ENTITY: Final = (
    "INSERT INTO entities (etype, eid, state, version, consumed) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (etype, eid) DO UPDATE SET "
    "state = coalesce(excluded.state, state), "
    "version = CASE WHEN excluded.state IS NULL THEN version ELSE excluded.version END, "
    "consumed = max(consumed, excluded.consumed)"
)


class StoreLockedError(PachytypeError):
    """Another process (or another open ecosystem) owns this database."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        super().__init__(
            f"database {str(path)!r} is already open by another LocalDisk ({holder}); "
            f"LocalDisk runs on one node: close the other process (or the other "
            f"ecosystem on this file) first, or use Postgres for many nodes"
        )


def connect(path: Path, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL on."""
    if synchronous not in ("FULL", "NORMAL", "OFF"):
        raise ValueError(
            f"synchronous={synchronous!r} for {str(path)!r}: use 'FULL' (the default: a "
            f"returned commit survives power loss), 'NORMAL' or 'OFF'"
        )
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (works while the owner writes: WAL)."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {str(path)!r}: check the --db path")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class FileLock:
    """An exclusive, non-blocking `flock` on `<db>.lock` holding our pid."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".lock")
        self.db = db
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f"pid {holder}" if holder else "pid unknown"
            raise StoreLockedError(self.db, f"{pid}, lock file {str(self.path)!r}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


def create_schema(conn: sqlite3.Connection, fingerprint: str) -> None:
    """Create the tables if new and record the schema version and fingerprint."""
    conn.executescript(_SCHEMA)
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if found is not None and int(found[0]) != SCHEMA_VERSION:
        raise PachytypeError(
            f"database schema version {found[0]} is not {SCHEMA_VERSION}, the version this "
            f"pachytype writes; open it with the pachytype release that created it"
        )
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema', ?), ('fingerprint', ?)",
            (str(SCHEMA_VERSION), fingerprint),
        )


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def recover(conn: sqlite3.Connection) -> Recovery:
    """Unconsumed mail (id order), pending timers, and the next free id."""
    mail: list[MailRow] = conn.execute(
        "SELECT m.id, m.etype, m.eid, m.payload FROM mailbox m "
        "LEFT JOIN entities e ON e.etype = m.etype AND e.eid = m.eid "
        "WHERE e.consumed IS NULL OR m.id > e.consumed ORDER BY m.id"
    ).fetchall()
    timers: list[TimerRow] = conn.execute(
        "SELECT id, etype, eid, payload, due FROM timers ORDER BY id"
    ).fetchall()
    top = conn.execute(
        "SELECT max(coalesce((SELECT max(id) FROM mailbox), 0), "
        "coalesce((SELECT max(id) FROM timers), 0), "
        "coalesce((SELECT max(consumed) FROM entities), 0))"
    ).fetchone()[0]
    return Recovery(next_id=int(top) + 1, mail=mail, timers=timers)


def write(conn: sqlite3.Connection, batch: CommitBatch) -> None:
    """Apply one group commit in one transaction."""
    with transaction(conn):
        if batch.mail:
            conn.executemany("INSERT INTO mailbox VALUES (?, ?, ?, ?)", batch.mail)
        if batch.entities:
            conn.executemany(_UPSERT_ENTITY, batch.entities)
        if batch.timers:
            conn.executemany("INSERT INTO timers VALUES (?, ?, ?, ?, ?)", batch.timers)
        if batch.fired:
            conn.executemany("DELETE FROM timers WHERE id = ?", [(i,) for i in batch.fired])
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
                for eid, state, version in conn.execute(
                    f"SELECT eid, state, version FROM entities "
                    f"WHERE etype = ? AND eid IN ({marks}) AND state IS NOT NULL",
                    (etype, *chunk),
                ):
                    found[(etype, eid)] = (state, version)
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
        d.error_type,
        d.error,
        d.traceback,
        d.state,
        d.version,
        pack_blobs(d.recent),
        d.at,
    )


def pack_blobs(blobs: Iterable[bytes]) -> bytes:
    """Several byte strings as one (each prefixed by its 4-byte length)."""
    return b"".join(struct.pack(">I", len(b)) + b for b in blobs)


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


class SqliteStore:
    """LocalDisk's `Store`: one SQLite file, one connection, used on the loop thread.

    Calls are synchronous inside the async methods: a group commit of a few
    hundred activations takes a millisecond or two, and a writer thread
    would cost more than it saves (it must retake the GIL for every row,
    behind a busy event loop).
    """

    def __init__(self, path: str | os.PathLike[str], synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._lock = FileLock(self.path)
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PachytypeError(f"the store {str(self.path)!r} is not open")
        return self._conn

    async def open(self, fingerprint: str) -> Recovery:
        self._lock.acquire()
        try:
            conn = connect(self.path, self.synchronous)
            try:
                create_schema(conn, fingerprint)
                recovery = recover(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        return recovery

    async def commit(self, batch: CommitBatch) -> None:
        write(self._c(), batch)

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        return read_states(self._c(), keys)

    async def dead_letters(self) -> list[DeadRow]:
        return read_dead(self._c())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self._lock.release()
