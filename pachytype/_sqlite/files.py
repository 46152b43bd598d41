"""Is this path a LocalDisk database? The checks made before opening one:
a regular file, SQLite's header, not emptied or cut short next to its log."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Final

from pachytype._errors import DatabaseFileError


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def shm_path(db: Path) -> Path:
    return db.with_name(db.name + "-shm")


LOST_DATABASE: Final = (
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
        raise not_a_file(db, mode)


def not_a_file(db: Path, mode: int) -> DatabaseFileError:
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
    wal = wal_path(db)
    if size == 0:
        if wal.exists() and wal.stat().st_size > 0:
            raise DatabaseFileError(db, LOST_DATABASE.format(what="is empty", wal=str(wal)))
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
    wal, shm = wal_path(db), shm_path(db)
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
