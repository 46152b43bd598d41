"""The SQLite adapter: LocalDisk's `Store` (stdlib sqlite3, WAL), plus the
synchronous file access `pachytype inspect` and `migrate` use.

Design note
-----------
* **One writer, proven.** `open` takes an exclusive `flock` on the database
  file itself, i.e. on its inode (released by the kernel when the process
  dies, even on SIGKILL): a second process, or a second `LocalDisk` in this
  one, reaching the file by any path (symlink, hard link, `..`) gets
  `StoreLockedError` naming the holder's pid. `FileLock` says why its
  descriptor lives exactly as long as the store. Readers (`inspect`) need
  no lock: WAL lets them read while the owner writes.
* **The right files, or none.** `open` refuses, naming the path, what is not
  a LocalDisk database (`DatabaseFileError`): a directory, a device,
  `:memory:`, a file that is not SQLite, a database missing or empty next to
  its `-wal`, a `-wal` truncated below what its index recorded, and a path
  whose previous database file (replaced or deleted) another LocalDisk
  still writes through (it would share this path's `-wal` and `-shm`).
  After every commit the store checks the path still names the files it
  writes: a database deleted or replaced while open fails the store
  instead of acknowledging commits that went into unlinked files, and on
  close its own `-wal` and `-shm` are moved aside (`*.orphaned-<pid>`)
  so they are never replayed into the new file (SQLite leaves them there).
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
  A keyed timer keeps its key in `timers.tkey` (added to older databases
  when opened); replaced and cancelled ones are deleted by id.

Tables: `meta(key, value)`, `entities(etype, eid, state, version,
consumed)`, `mailbox(id, etype, eid, payload)`, `timers(id, etype, eid,
payload, due, tkey)`, `dead_letters(id, etype, eid, message, error_type, error,
traceback, state, version, recent, at)`, `events(position, etype, eid, seq,
payload)` (append-only; `position` is AUTOINCREMENT, so positions are given
in commit order by the one writer and never reused: the per-type stream
resumes after a position with no gap), `snapshots(etype, eid, seq, state,
version)` (an event-sourced entity's latest snapshot). Events and snapshots
are written by the same transaction as the states and mail of their batch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pachytype._codec import storable_text
from pachytype._errors import DatabaseFileError, PachytypeError
from pachytype._store import (
    CommitBatch,
    DeadRow,
    EntityKey,
    Journal,
    LogRow,
    MailRow,
    News,
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

_UPSERT_ENTITY: Final = (
    "INSERT INTO entities (etype, eid, state, version, consumed) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (etype, eid) DO UPDATE SET "
    "state = coalesce(excluded.state, state), "
    "version = CASE WHEN excluded.state IS NULL THEN version ELSE excluded.version END, "
    "consumed = max(consumed, excluded.consumed)"
)
"""A turn's row (no recent messages: they are written when the entity leaves
memory). Its own statement, so the hot path binds no NULL for them (see
`write` on binding)."""

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


_HELD: dict[tuple[int, int], FileLock] = {}
"""The database files this process holds, by (device, inode)."""

_HELD_GUARD: Final = threading.Lock()


class FileLock:
    """The single-writer lock: an exclusive `flock` on the database file itself.

    It locks the file's inode, so every spelling of the path (a symlink, a
    hard link, `..`, a relative path) meets the same lock, and there is no
    side file an operator could delete as "stale". The kernel drops it when
    the process dies, SIGKILL included.

    The descriptor must outlive the SQLite connection: SQLite locks the same
    file with POSIX `fcntl` locks, and closing *any* descriptor of a file
    drops every fcntl lock the process holds on it. So `release` is called
    after `conn.close()`, and a second open of a file this process already
    holds is refused from a process-wide table (`_HELD`) without closing the
    descriptor it opened to find out (that one is closed with the holder's).
    `flock` and `fcntl` locks are independent on Linux local file systems;
    NFS emulates `flock` with `fcntl` (LocalDisk, like SQLite's WAL mode,
    needs a local file system).

    `acquire` also refuses files that are not a LocalDisk database (see
    `check_files`), and `check_in_place` (after each commit) notices a
    database deleted or replaced while open.
    """

    def __init__(self, db: Path, *, check_wal: bool = True) -> None:
        self.db = db
        self.check_wal = check_wal
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self._wal: tuple[int, int] | None = None
        self._shm: tuple[int, int] | None = None
        self._parked: list[int] = []

    def acquire(self) -> None:
        check_path(self.db)
        with _HELD_GUARD:
            fd = _open_database(self.db)
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            holder = _HELD.get(key)
            if holder is not None:
                # Closing `fd` now would drop the holder's SQLite locks: park it.
                holder._parked.append(fd)
                raise StoreLockedError(
                    self.db, f"pid {os.getpid()}, this process: as {str(holder.db)!r}"
                )
            try:
                if not stat.S_ISREG(info.st_mode):
                    raise _not_a_file(self.db, info.st_mode)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreLockedError(self.db, _flock_holder(info)) from None
                writer = previous_writer(self.db, info)
                here = os.path.realpath(self.db)
                if any(os.path.realpath(h.db) == here for h in _HELD.values()):
                    writer = f"{os.getpid()}, this process"
                if writer is not None:
                    raise DatabaseFileError(
                        self.db,
                        f"another process (pid {writer}) still writes through the "
                        f"database file that was at this path before it was replaced or "
                        f"deleted, and so through this path's -wal and -shm; opening now "
                        f"would mix its log into this database. Stop that process first "
                        f"(it fails at its next commit), then open again",
                    )
                check_files(self.db, fd, check_wal=self.check_wal)
            except BaseException:
                # No LocalDisk of this process holds the file (a raw sqlite3
                # connection to it here would lose its fcntl locks: see above).
                os.close(fd)
                raise
            self._fd, self._key = fd, key
            _HELD[key] = self

    def note_wal(self) -> None:
        """Remember the `-wal` and `-shm` files SQLite opened (see `check_in_place`)."""
        self._wal = _identity(_wal_path(self.db))
        self._shm = _identity(_shm_path(self.db))

    def check_in_place(self) -> None:
        """Raise if the path no longer names the files this lock holds.

        SQLite does not notice (in WAL mode) a database or `-wal` deleted or
        replaced while open: it goes on writing into the unlinked files, and
        everything it commits from then on is lost when it closes.
        """
        found = _identity(self.db)
        if found != self._key:
            raise DatabaseFileError(
                self.db,
                f"the database file at this path was {'deleted' if found is None else 'replaced'} "
                f"while this LocalDisk had it open: what it committed went to the old file, "
                f"now gone from the path, and nothing more will be acknowledged (the last "
                f"commit was not). Close the ecosystem; "
                + (
                    "the -wal and -shm it used stay next to the path: put the old database "
                    "file back beside them, or move them away to start afresh"
                    if found is None
                    else f"it then moves the -wal and -shm it used aside (as "
                    f"{_orphan(_wal_path(self.db)).name!r} and "
                    f"{_orphan(_shm_path(self.db)).name!r}) so that they are never mixed "
                    f"into the file now at this path"
                ),
            )
        if self._wal is not None and _identity(_wal_path(self.db)) != self._wal:
            raise DatabaseFileError(
                self.db,
                f"its write-ahead log {str(_wal_path(self.db))!r} was deleted or replaced "
                f"while this LocalDisk had it open; nothing more will be acknowledged (the "
                f"last commit was not). Close the ecosystem: closing writes the log it "
                f"still holds into the database file, then open it again",
            )

    def set_aside(self) -> None:
        """Once the connection is closed: if another file now sits at the path
        (the database was replaced while open), move the `-wal` and `-shm` this
        store used aside. SQLite leaves them there when its database moved, and
        whoever opens the path next would replay that log into the new file.
        Files that are not ours are never touched; nothing here raises."""
        found = _identity(self.db)
        if self._key is None or found is None or found == self._key:
            return
        for path, key in ((_wal_path(self.db), self._wal), (_shm_path(self.db), self._shm)):
            with contextlib.suppress(OSError):
                if key is not None and _identity(path) == key:
                    os.rename(path, _orphan(path))

    def release(self) -> None:
        """Drop the lock: call only once the SQLite connection is closed."""
        with _HELD_GUARD:
            fd, self._fd = self._fd, None
            if self._key is not None and _HELD.get(self._key) is self:
                del _HELD[self._key]
            parked, self._parked = self._parked, []
            for other in [*parked, *([] if fd is None else [fd])]:
                os.close(other)  # closing the descriptor drops the flock


def _wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def _shm_path(db: Path) -> Path:
    return db.with_name(db.name + "-shm")


def _orphan(path: Path) -> Path:
    return path.with_name(f"{path.name}.orphaned-{os.getpid()}")


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None if there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


def _open_database(db: Path) -> int:
    """A descriptor of `db`, creating it unless a `-wal` says it was lost."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO must not block
    try:
        return os.open(db, flags)
    except FileNotFoundError:
        wal = _wal_path(db)
        if wal.exists() and wal.stat().st_size > 0:
            raise DatabaseFileError(
                db, _LOST_DATABASE.format(what="is missing", wal=str(wal))
            ) from None
    except IsADirectoryError:
        raise _not_a_file(db, stat.S_IFDIR) from None
    try:
        return os.open(db, flags | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise DatabaseFileError(
            db,
            f"its directory {str(db.parent)!r} does not exist: create it first (LocalDisk "
            f"creates the database file, not the directories above it)",
        ) from None


_LOST_DATABASE: Final = (
    "the database file {what} but its write-ahead log {wal!r} exists: the database "
    "was deleted or truncated while its log was kept, and SQLite would start a new, "
    "empty database over that log. Restore the database file (with its -wal and "
    "-shm, as they were), or move the -wal and -shm files away to start afresh"
)


def check_path(db: Path) -> None:
    """Refuse, before opening anything, what cannot be a database file."""
    if str(db) == ":memory:":
        raise DatabaseFileError(
            db,
            "LocalDisk stores on disk, in a file: give the path of a database file "
            "(it is created if missing); for an ecosystem in memory use InMemory",
        )
    try:
        mode = os.stat(db).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise _not_a_file(db, mode)


def _not_a_file(db: Path, mode: int) -> DatabaseFileError:
    if stat.S_ISDIR(mode):
        return DatabaseFileError(
            db,
            f"it is a directory: give the path of the database file, "
            f"e.g. {str(db / 'eco.db')!r} (it is created if missing)",
        )
    return DatabaseFileError(
        db,
        "it is not a regular file (a device, a FIFO or a socket): give the path of a "
        "database file on a local file system (it is created if missing)",
    )


_HEADER: Final = b"SQLite format 3\x00"


def check_files(db: Path, fd: int, *, check_wal: bool = True) -> None:
    """Refuse a file that is not an SQLite database, a database emptied next to
    its `-wal`, and (`check_wal`) a `-wal` shorter than its index says."""
    size = os.fstat(fd).st_size
    wal = _wal_path(db)
    if size == 0:
        if wal.exists() and wal.stat().st_size > 0:
            raise DatabaseFileError(db, _LOST_DATABASE.format(what="is empty", wal=str(wal)))
        return
    header = os.pread(fd, 100, 0)
    if len(header) < 100 or not header.startswith(_HEADER):
        raise DatabaseFileError(
            db,
            f"it is not an SQLite database (it starts with {header[:16]!r}): check the "
            f"path; LocalDisk creates its database itself when the file does not exist",
        )
    problem = wal_truncation(db) if check_wal else None
    if problem is not None:
        raise DatabaseFileError(db, problem)


def wal_truncation(db: Path) -> str | None:
    """What is wrong if the `-wal` holds fewer frames than its index (`-shm`)
    records as committed, else None.

    SQLite itself ignores a short log: it replays the frames it finds and
    silently drops the transactions that were in the missing part. The
    index survives a crash (it is a file, not memory), so when its header is
    intact and belongs to this log (same salts) its frame count is what the
    log held; a log cut below it lost committed transactions. (A log cut at
    a transaction boundary with no index left cannot be told from an older
    log: that is where SQLite does not allow detecting it.) Only meaningful
    with `synchronous=FULL`: with NORMAL the log is not synced at commit, so
    after a power loss the index may legitimately be ahead of it.
    """
    wal, shm = _wal_path(db), _shm_path(db)
    try:
        with open(wal, "rb") as f:
            wal_header = f.read(32)
            wal_size = os.fstat(f.fileno()).st_size
        with open(shm, "rb") as f:
            index = f.read(96)
    except FileNotFoundError:
        return None
    if len(index) < 96 or index[:48] != index[48:96]:
        return None  # no index, or one being written: SQLite rebuilds it
    version, _, _, initialised, _, page_size, frames = struct.unpack("=IIIBBHI", index[:20])
    if version != 3007000 or not initialised or frames == 0:
        return None
    page_size = 65536 if page_size == 1 else page_size
    salts = index[32:40]
    if len(wal_header) == 32 and wal_header[16:24] != salts:
        return None  # the index belongs to an older log
    present = max(0, wal_size - 32) // (24 + page_size)
    if present >= frames:
        return None
    return (
        f"its write-ahead log {str(wal)!r} is truncated: its index records {frames} "
        f"committed frame(s), the log holds {present}; opening it would silently drop "
        f"the transactions committed in the missing part. Put back the complete -wal "
        f"file (from where it was copied), or, to accept losing those transactions, "
        f"delete {str(shm)!r} and open again"
    )


def _proc_locks() -> list[tuple[str, str, str, str]]:
    """(kind, mode, pid, device:inode) of every lock held, from /proc/locks
    (Linux; empty where there is none)."""
    held = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields or len(fields) < 6:
                continue  # a waiter, not a holder
            held.append((fields[1], fields[3], fields[4], fields[5]))
    return held


def _inode(info: os.stat_result) -> str:
    """An inode as /proc/locks writes it."""
    return f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"


def _flock_holder(info: os.stat_result) -> str:
    """Who holds the flock on this inode."""
    inode = _inode(info)
    for kind, mode, pid, where in _proc_locks():
        if kind == "FLOCK" and mode == "WRITE" and where == inode:
            return f"pid {pid}"
    return "pid unknown"


def previous_writer(db: Path, info: os.stat_result) -> str | None:
    """A process still writing through an older file at this path, if any.

    When a database is replaced (a backup renamed over it) or deleted while
    a LocalDisk runs, that process keeps the old file open and still uses
    the `-wal` and `-shm` *paths* next to it: SQLite would replay its log
    into the new database and, when it closes, delete this path's `-wal`
    and `-shm` by name. Two signs, from /proc (Linux): a process holding
    SQLite's locks on this path's `-shm` but none on this database file
    (it reached the `-shm` through another file), or a process holding a
    LocalDisk flock on a file it opened at this path that is now deleted.
    """
    me = str(os.getpid())
    held = _proc_locks()
    on_db = {pid for kind, _, pid, where in held if kind == "POSIX" and where == _inode(info)}
    with contextlib.suppress(OSError):
        shm = _inode(os.stat(_shm_path(db)))
        for kind, _, pid, where in held:
            if kind == "POSIX" and where == shm and pid != me and pid not in on_db:
                return pid
    gone = f"{os.path.realpath(db)} (deleted)"
    for kind, _, pid, _where in held:
        if kind != "FLOCK" or pid == me:
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == gone:
                        return pid
    return None


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

    The hot rows (mail, turns) bind their blobs as `bytearray`: the sqlite3
    module passes `bytes` and None through its adapter lookup, which builds
    and drops an AttributeError per value (about a tenth of an insert's
    instructions); a bytearray is bound directly, as the same BLOB.
    """
    with transaction(conn):
        if batch.attempted:
            conn.executemany(
                "INSERT INTO attempts VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1",
                [(i,) for i in batch.attempted],
            )
        if batch.mail:
            conn.executemany(
                "INSERT INTO mailbox VALUES (?, ?, ?, ?)",
                [(i, etype, eid, bytearray(payload)) for i, etype, eid, payload in batch.mail],
            )
        if batch.entities:
            # Rows of one entity commute (each sets only what it carries).
            turns = [
                (r[0], r[1], None if r[2] is None else bytearray(r[2]), r[3], r[4])
                for r in batch.entities
                if r[5] is None
            ]
            if turns:
                conn.executemany(_UPSERT_ENTITY, turns)
            if len(turns) < len(batch.entities):
                conn.executemany(
                    _UPSERT_RECENT,
                    [
                        (*row[:5], pack_blobs(row[5]))
                        for row in batch.entities
                        if row[5] is not None
                    ],
                )
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
        self._lock = FileLock(self.path, check_wal=synchronous == "FULL")
        self._conn: sqlite3.Connection | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PachytypeError(f"the store {str(self.path)!r} is not open")
        return self._conn

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        # One scope, owned from here to `close`, no other writer: `wake` never rings.
        self._lock.acquire()
        try:
            conn = connect(self.path, self.synchronous)
            try:
                create_schema(conn, fingerprint)
                self._lock.note_wal()
                recovery = recover(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        return recovery

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return 0

    def owned(self) -> frozenset[int] | None:
        return None

    def followed(self) -> frozenset[EntityKey]:
        return frozenset()

    async def news(self) -> News:
        return News()

    async def commit(self, batch: CommitBatch) -> None:
        # Never fenced (the flock is ours until close); `answers` stays empty
        # (no caller in another process: recovered mail has no `calls`).
        write(self._c(), batch)
        self._lock.check_in_place()  # never acknowledge a commit into deleted files

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        return read_states(self._c(), keys)

    async def dead_letters(self) -> list[DeadRow]:
        return read_dead(self._c())

    async def load_journals(self, keys: Sequence[EntityKey]) -> dict[EntityKey, Journal]:
        return read_journals(self._c(), keys)

    async def read_events(
        self, entity_type: str, id_text: str | None, after: int, limit: int
    ) -> list[LogRow]:
        return read_events(self._c(), entity_type, id_text, after, limit)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                # A failing disk must not stop the close: the next open then
                # treats pending mail as suspect, which is only cautious.
                with contextlib.suppress(sqlite3.Error):
                    mark_closed(conn)
                conn.close()
                self._lock.set_aside()  # still holding the lock: no one else opened
        finally:
            self._lock.release()
