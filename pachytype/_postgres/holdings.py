"""What a `PostgresStore` holds between two calls of its runtime: the rows it
has handed over (`held`), the partitions and epochs the runtime knows of, the
claim horizon, the recovery in progress and the id range; the base class its
parts (`claims.py`, `commit.py`, `store.py`) share, with the two rules they
all apply: which partition a key is in, and what a failed database call does."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._clock import Clock
from pachytype._postgres.lease import Ownership, channel
from pachytype._postgres.partition import partition_of
from pachytype._postgres.schema import quote_schema
from pachytype._store import AnswerRow, EntityKey

log = logging.getLogger("pachytype.postgres")

NODE_IDS: Final = 1 << 62
"""Ids of mail created by node runtimes start here (`seq` stays below)."""

SESSION_IDS: Final = 1 << 31
"""Ids one store session may give (each session has a range of its own)."""

UNKNOWN_OUTCOME: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # The connection's protocol is out of step with the server, e.g. when a
    # process paused mid-commit resumes and reads its statement's result and
    # the server's end of its session together: the outcome is unknown.
    asyncpg.InternalClientError,
)
"""Errors of a database call whose outcome is unknown: reported as fenced
(the runtime reloads from the database); anything else is a bug."""

HeldRow = tuple[int, uuid.UUID | None, str | None, bytes | None]
"""A held row: (partition, outside message id or None, reply channel, reply key)."""


class StoreRecords:
    """The state of one worker's store, and the rules every part of it applies."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        partitions: int,
        node_id: str,
        ownership: Ownership,
        share: Callable[[int], bool],
        is_local: Callable[[uuid.UUID], bool],
        resolve: Callable[[uuid.UUID, AnswerRow], None],
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.partitions = partitions
        self.node_id = node_id
        self.ownership = ownership
        self._share = share
        self._is_local = is_local
        self._resolve = resolve
        self._clock = clock
        self._s = quote_schema(schema)
        self._wake: Callable[[], None] = lambda: None
        self._delivered: dict[int, int] = {}  # partition -> epoch, as the runtime knows it
        self._leaving: dict[int, int] = {}  # lost partition -> its epoch, until `leave`
        self._reset = False  # a commit failed: the runtime forgot everything
        self._suspect_all = False  # ... and it may have been refused: count attempts
        self._xmin = "0"  # the last claim's snapshot horizon (xid8 as text)
        self._floor: int | None = None  # the first recovery page's horizon, while recovering
        self._recovering: dict[int, list[Any]] = {}  # partition -> [last seq read, suspect?]
        self._claimed_meanwhile = False  # other partitions were claimed while recovering
        self._told = asyncio.Event()  # set at the end of each `news()`
        self._held: dict[int, HeldRow] = {}
        self._outside: dict[uuid.UUID, int] = {}  # outside message ids held -> runtime id
        self._attempted: set[int] = set()  # ids with an `attempts` row
        self._watched: set[EntityKey] = set()
        # Rows the commit under way deletes (seq, or outside id -> its number):
        # a claim beside it may still see them (its snapshot is older), so it
        # skips them, until a claim begun after that commit finished.
        self._consuming: dict[int, int] = {}
        self._consuming_ids: dict[uuid.UUID, int] = {}
        self._commit_no = 0  # commits sent
        self._done_no = 0  # commits finished (written or not)
        self._base = NODE_IDS
        self._backoff = 0.0
        self._mail_channel = channel(schema, "mail")
        self._state_channel = channel(schema, "state")
        self._events_channel = channel(schema, "events")

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return partition_of(entity_type, id_text, self.partitions)

    def _failed(self, error: BaseException) -> None:
        """A store call failed: the runtime forgets everything and reloads (after
        a pause that grows while the database stays unreachable)."""
        self._reset = True
        self._backoff = min(max(self._backoff * 2, 0.05), 2.0)
        log.warning("node %s: a database call failed: %s", self.node_id, error_text(error))


def error_text(error: BaseException) -> str:
    """An error as one line: its class and its message."""
    return f"{type(error).__name__}: {error}"
