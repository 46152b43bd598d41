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

from pachytype._sqlite.schema import Synchronous
from pachytype._sqlite.store import SqliteStore

__all__ = ["SqliteStore", "Synchronous"]
