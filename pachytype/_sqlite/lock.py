"""The single-writer lock of a LocalDisk database (`FileLock`), and who holds
it or still writes through an older file at the same path (from /proc)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from pathlib import Path
from typing import Final

from pachytype._errors import DatabaseFileError, StoreLockedError
from pachytype._sqlite.files import (
    LOST_DATABASE,
    check_files,
    check_path,
    not_a_file,
    shm_path,
    wal_path,
)

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
        # Spelled once: `check_in_place` stats them after every commit.
        self._db_text = os.fspath(db)
        self._wal_text = os.fspath(wal_path(db))

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
                    raise not_a_file(self.db, info.st_mode)
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
        self._wal = _identity(wal_path(self.db))
        self._shm = _identity(shm_path(self.db))

    def check_in_place(self) -> None:
        """Raise if the path no longer names the files this lock holds.

        SQLite does not notice (in WAL mode) a database or `-wal` deleted or
        replaced while open: it goes on writing into the unlinked files, and
        everything it commits from then on is lost when it closes.
        """
        found = _identity(self._db_text)
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
                    f"{_orphan(wal_path(self.db)).name!r} and "
                    f"{_orphan(shm_path(self.db)).name!r}) so that they are never mixed "
                    f"into the file now at this path"
                ),
            )
        if self._wal is not None and _identity(self._wal_text) != self._wal:
            raise DatabaseFileError(
                self.db,
                f"its write-ahead log {str(wal_path(self.db))!r} was deleted or replaced "
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
        for path, key in ((wal_path(self.db), self._wal), (shm_path(self.db), self._shm)):
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


def _orphan(path: Path) -> Path:
    return path.with_name(f"{path.name}.orphaned-{os.getpid()}")


def _identity(path: str | Path) -> tuple[int, int] | None:
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
        wal = wal_path(db)
        if wal.exists() and wal.stat().st_size > 0:
            raise DatabaseFileError(
                db, LOST_DATABASE.format(what="is missing", wal=str(wal))
            ) from None
    except IsADirectoryError:
        raise not_a_file(db, stat.S_IFDIR) from None
    try:
        return os.open(db, flags | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise DatabaseFileError(
            db,
            f"its directory {str(db.parent)!r} does not exist: create it first (LocalDisk "
            f"creates the database file, not the directories above it)",
        ) from None


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
        shm = _inode(os.stat(shm_path(db)))
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
