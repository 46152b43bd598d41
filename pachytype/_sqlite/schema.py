"""The database: its tables, connections to it (autocommit, WAL), and the
explicit transactions every write goes through."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

from pachytype._errors import PachytypeError

SCHEMA_VERSION: Final = 1

Synchronous = Literal["FULL", "NORMAL", "OFF"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    etype TEXT NOT NULL, eid TEXT NOT NULL, state BLOB, version INTEGER NOT NULL,
    consumed INTEGER NOT NULL, recent BLOB, PRIMARY KEY (etype, eid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
    id INTEGER PRIMARY KEY, etype TEXT NOT NULL, eid TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY, etype TEXT NOT NULL, eid TEXT NOT NULL, payload BLOB NOT NULL,
    due REAL NOT NULL, tkey TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, etype TEXT NOT NULL, eid TEXT NOT NULL,
    message BLOB NOT NULL, error_type TEXT NOT NULL, error TEXT NOT NULL,
    traceback TEXT NOT NULL, state BLOB, version INTEGER NOT NULL, recent BLOB NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT, etype TEXT NOT NULL, eid TEXT NOT NULL,
    seq INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS events_of_entity ON events (etype, eid, seq);
CREATE INDEX IF NOT EXISTS events_of_type ON events (etype, position);
CREATE TABLE IF NOT EXISTS snapshots (
    etype TEXT NOT NULL, eid TEXT NOT NULL, seq INTEGER NOT NULL, state BLOB NOT NULL,
    version INTEGER NOT NULL, PRIMARY KEY (etype, eid)) WITHOUT ROWID;
"""


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


def create_schema(conn: sqlite3.Connection, fingerprint: str) -> None:
    """Create the tables if new and record the schema version and fingerprint."""
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entities)")}
    if "recent" not in columns:  # a database from before recent messages were kept
        conn.execute("ALTER TABLE entities ADD COLUMN recent BLOB")
    if "tkey" not in {row[1] for row in conn.execute("PRAGMA table_info(timers)")}:
        conn.execute("ALTER TABLE timers ADD COLUMN tkey TEXT")  # before keyed timers
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
