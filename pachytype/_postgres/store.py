"""PostgreSQL as a `Store` (`pachytype._store`): what a node's durable runtime
keeps in the database, owning the partitions its node holds leases on.

Design note
-----------
A node runs one `DurableRuntime` per worker over one `PostgresStore` each;
worker `w` serves the partitions `p` with `p % workers == w` that its node
holds (`_postgres.lease.Ownership`, kept by the node's heartbeat). This module
is the I/O: everything about scheduling is the shared runtime's.

* **Ownership.** A store's scopes are partitions. `news()` compares the
  epochs the heartbeat holds now with those it last told the runtime:
  a partition whose epoch changed or vanished is lost, one new (or at a
  new epoch) is gained and recovered whole: every row of it, whoever took
  it before. Partitions taken from an owner whose lease expired (it died)
  are *suspect*: their mail may have been running, so it comes back with
  its durable attempt counts (`attempts`) and the runtime counts one more
  before it runs it again (a message that killed `MAX_ATTEMPTS` owners is
  dead-lettered unrun).
* **Claims without locks.** Mail written by other processes (clients,
  other nodes) rings the bell through a NOTIFY of its partition (and a
  poll every `poll_interval`, for notifications lost with a LISTEN
  connection). A claim reads the rows of owned partitions inserted by
  transactions at or after the previous claim's snapshot horizon
  (`ins_xid >= pg_snapshot_xmin`): every row that claim could not see
  was inserted by a transaction that was in progress or had not begun, so
  none is missed, whatever order inserters commit in; rows read twice are
  known by id and skipped. No row is written to claim it.
* **Ids.** Claimed rows keep their `seq` (a bigserial, below 2**62) as
  their runtime id. Each time a store gains partitions it takes a number
  from `sessions` and its runtime numbers the mail it creates from
  `2**62 + session * 2**31` on, so ids never collide across nodes or with
  `seq`, and an entity taken over keeps sending in order: its new owner's
  range lies above every range used before (recovery and claims read mail
  in id order). Ids are not commit-ordered across writers, so the store
  records every consumed id: it deletes the row, and an outside message's
  id goes to `dedupe` (a resend is dropped when claimed).
* **One statement per commit, fenced: one round trip.** A commit is one
  statement, its own transaction: it locks the store's lease rows `FOR KEY
  SHARE` and checks owner and epoch (every write in it is conditional on
  that check, so a stale owner writes nothing and gets `FencedError`). A
  lease row that changed between the statement's snapshot and its lock
  (the lock reads the row as it is now, the snapshot as it was) may hide a
  follower registered meanwhile (a follower takes the row `FOR UPDATE` and
  writes it): then the statement writes nothing and is sent again, with a
  newer snapshot (a lease renewal does the same, rarely). Dead letters and
  events add statements, in a transaction around it (`BEGIN`, statement,
  theirs, `COMMIT`). A lost connection or a refused statement is also
  reported as fenced (the outcome is unknown: the runtime reloads from the
  database) and makes every reloaded message suspect, so a message whose
  commit the database keeps refusing is isolated and dead-lettered by the
  attempts rule instead of failing its batch forever.
* **Answers and followers in the commit.** A call's answer is written with
  its dedupe id and NOTIFYed to its caller's channel in the committing
  statement (a caller in this process is resolved after the commit,
  without the notification). Entities followed anywhere (`watches`) have
  each committed state written to `history` in the commit; the commit
  checks, under the lease row lock a new follower must take, that no
  entity of the batch became followed since it was built (else it is
  refused like a fenced one and rebuilt knowing it).
* **Events** get log positions from `event_heads`, under that row's lock,
  so positions follow commit order across nodes (a stream never passes a
  position a later commit fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson

from pachytype._clock import Clock
from pachytype._codec import storable_text
from pachytype._core.timers import DROPPED
from pachytype._core.turn import RECENT
from pachytype._inbox import INBOX
from pachytype._postgres.lease import Ownership, channel
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reply import PAYLOAD_LIMIT, entry, pack
from pachytype._postgres.schema import dropped_answers, quote_schema
from pachytype._store import (
    AnswerRow,
    CommitBatch,
    DeadRow,
    EntityKey,
    FencedError,
    Journal,
    LogRow,
    MailRow,
    News,
    Recovery,
    StoredState,
    TimerRow,
)

log = logging.getLogger("pachytype.postgres")

NODE_IDS: Final = 1 << 62
"""Ids of mail created by node runtimes start here (`seq` stays below)."""

SESSION_IDS: Final = 1 << 31
"""Ids one store session may give (each session has a range of its own)."""

RECOVERY_PAGE: Final = 50_000
"""Rows of gained partitions read per `news()` (the runtime works between two pages)."""

RECENT_BYTES: Final = 64 * 1024
"""Most bytes of recent messages stored with a state: the newest that fit, at least one."""

_NIL: Final = uuid.UUID(int=0)
"""`msg_id` of mail between entities (only outside messages are deduplicated by id)."""

_UNREADABLE: Final = frozenset({"DecodeError", "UnknownEntityError"})
"""Dead letters of stored mail that no longer decodes: logged (a deploy broke it)."""

_ERRORS: Final = (
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

_MOVED_RETRIES: Final = 5
"""Times a commit statement is sent again because a lease row it locked changed
under its snapshot (a follower registered, or a renewal), before it is refused."""

# A held row: (partition, outside message id or None, reply channel, reply key).
_Held = tuple[int, uuid.UUID | None, str | None, bytes | None]


def new_message_id() -> uuid.UUID:
    """A message id that sorts by creation time (UUIDv7 layout)."""
    import os
    import time

    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return uuid.UUID(bytes=bytes(raw))


def bounded(payloads: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The last `RECENT` payloads, newest first kept, within `RECENT_BYTES`."""
    kept = payloads[-RECENT:]
    size = sum(len(p) for p in kept)
    while len(kept) > 1 and size > RECENT_BYTES:
        size -= len(kept[0])
        kept = kept[1:]
    return kept


def pack_recent(payloads: Iterable[bytes]) -> bytes:
    """Encoded messages as one value (each prefixed by its 4-byte length)."""
    parts: list[bytes] = []
    for p in payloads:
        parts.append(len(p).to_bytes(4, "big"))
        parts.append(p)
    return b"".join(parts)


def unpack_recent(data: bytes | None) -> tuple[bytes, ...]:
    """The inverse of `pack_recent` (None: nothing stored)."""
    out: list[bytes] = []
    at = 0
    while data is not None and at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(bytes(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return tuple(out)


def state_hint(entity_type: str, id_text: str) -> str:
    """The NOTIFY payload telling followers of an entity that it has new
    states in `history` (`*`, for every followed entity, if it is too long)."""
    text = orjson.dumps([entity_type, id_text]).decode()
    return text if len(text) <= PAYLOAD_LIMIT else "*"


class PostgresStore:
    """One worker's share of a node's partitions, as a `Store`."""

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
        self._reset = False  # a commit failed: the runtime forgot everything
        self._suspect_all = False  # ... and it may have been refused: count attempts
        self._xmin = "0"  # the last claim's snapshot horizon (xid8 as text)
        self._floor: int | None = None  # the first recovery page's horizon, while recovering
        self._recovering: dict[int, list[Any]] = {}  # partition -> [last seq read, suspect?]
        self._claimed_meanwhile = False  # other partitions were claimed while recovering
        self._told = asyncio.Event()  # set at the end of each `news()`
        self._held: dict[int, _Held] = {}
        self._outside: dict[uuid.UUID, int] = {}  # outside message ids held -> runtime id
        self._attempted: set[int] = set()  # ids with an `attempts` row
        self._watched: set[EntityKey] = set()
        self._base = NODE_IDS
        self._backoff = 0.0
        self._mail_channel = channel(schema, "mail")
        self._state_channel = channel(schema, "state")
        self._events_channel = channel(schema, "events")

    # -- the Store interface -----------------------------------------------------

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        self._wake = wake
        news = await self.news()
        return news.gained or Recovery(next_id=self._base, mail=[], timers=[])

    def ring(self) -> None:
        """Something may be new (a notification, a poll, ownership moved)."""
        self._wake()

    def scope_of(self, entity_type: str, id_text: str) -> int:
        return partition_of(entity_type, id_text, self.partitions)

    def owned(self) -> frozenset[int] | None:
        return frozenset(self._delivered)

    def followed(self) -> set[EntityKey]:
        return self._watched

    async def news(self) -> News:
        if self._backoff:
            await asyncio.sleep(self._backoff)
        try:
            news = await self._news()
        except _ERRORS as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), _text(error)) from error
        finally:
            self._told.set()
        self._backoff = 0.0
        return news

    async def let_go(self, partitions: Iterable[int], timeout: float) -> None:
        """Return once the runtime knows it no longer owns `partitions` (its
        `news()` said so, between two commits: no batch of theirs is built or
        in flight), or after `timeout` s. The heartbeat waits for this before
        it releases them, so a planned handover refuses no commit (a refused
        commit costs a reload of every partition)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone = set(partitions)
        while gone & self._delivered.keys() and (left := deadline - loop.time()) > 0:
            self._told.clear()
            self._wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._told.wait(), left)

    def _failed(self, error: BaseException) -> None:
        """A store call failed: the runtime forgets everything and reloads (after
        a pause that grows while the database stays unreachable)."""
        self._reset = True
        self._backoff = min(max(self._backoff * 2, 0.05), 2.0)
        log.warning("node %s: a database call failed: %s", self.node_id, _text(error))

    async def _news(self) -> News:
        current = {p: e for p, e in self.ownership.epochs.items() if self._share(p)}
        before = self._delivered
        if self._reset:
            self._reset = False
            self._held.clear()
            self._outside.clear()
            self._recovering.clear()
            before = {}
        lost = frozenset(p for p, e in self._delivered.items() if current.get(p) != e)
        gained = sorted(p for p, e in current.items() if before.get(p) != e)
        if lost:
            self._unhold(lost)
        self._delivered = current
        if gained:
            # Taken from a dead owner (or after a refused commit): their mail
            # may have been running, it comes back with its attempt counts.
            expired = self.ownership.expired & set(gained)
            self.ownership.expired -= expired
            for p in gained:
                self._recovering[p] = [-1, self._suspect_all or p in expired]
            self._suspect_all = False
        claimed = [p for p in current if p not in self._recovering]
        async with self.pool.acquire() as conn:
            if gained:
                # A new range of ids, above every range used so far: mail of an
                # entity taken over from another node follows what it sent there.
                session = await conn.fetchval(f"SELECT nextval('{self._s}.sessions')")
                self._base = NODE_IDS + (int(session) % (NODE_IDS // SESSION_IDS)) * SESSION_IDS
            recovery = await self._recover(conn) if self._recovering else None
            mail, timers, calls = await self._claim(conn, claimed) if claimed else ([], [], [])
        if self._recovering:
            self._claimed_meanwhile = self._claimed_meanwhile or bool(claimed)
            self._wake()  # the next page, between two commits
        elif self._floor is not None:
            # Recovered partitions join the claims: from their recovery's
            # horizon on (the older one, if other partitions were claimed meanwhile).
            floor = self._floor
            if self._claimed_meanwhile or claimed:
                floor = min(int(self._xmin), floor)
            self._xmin = str(floor)
            self._floor = None
            self._claimed_meanwhile = False
        news = News(lost=lost, gained=recovery, mail=mail, timers=timers, calls=frozenset(calls))
        return self._since(news)

    def _unhold(self, lost: Iterable[int]) -> None:
        """Forget the rows of partitions no longer owned."""
        gone = set(lost)
        for mail_id in [i for i, h in self._held.items() if h[0] in gone]:
            held = self._held.pop(mail_id)
            if held[1] is not None:
                self._outside.pop(held[1], None)
        for p in gone:
            self._recovering.pop(p, None)

    def _since(self, news: News) -> News:
        """`news` less the partitions lost while it was read (the heartbeat may
        hand some over meanwhile): the runtime must not build a batch with them."""
        now = self.ownership.epochs
        gone = frozenset(p for p, e in self._delivered.items() if now.get(p) != e)
        if not gone:
            return news
        held = self._held

        def kept(mail_id: int) -> bool:
            return mail_id in held and held[mail_id][0] not in gone

        news = News(
            lost=news.lost | gone,
            gained=None
            if news.gained is None
            else Recovery(
                next_id=news.gained.next_id,
                mail=[r for r in news.gained.mail if kept(r[0])],
                timers=[r for r in news.gained.timers if kept(r[0])],
                suspects={i: n for i, n in news.gained.suspects.items() if kept(i)},
                calls=frozenset(i for i in news.gained.calls if kept(i)),
            ),
            mail=[r for r in news.mail if kept(r[0])],
            timers=[r for r in news.timers if kept(r[0])],
            calls=frozenset(i for i in news.calls if kept(i)),
        )
        self._unhold(gone)
        self._delivered = {p: e for p, e in self._delivered.items() if p not in gone}
        return news

    async def _recover(self, conn: asyncpg.Connection) -> Recovery:
        """The next page of the partitions being recovered: every row, whoever
        took it before, in `seq` order per partition; about `RECOVERY_PAGE` rows
        in all, so the runtime works (and learns of a lost partition) between
        two pages instead of loading a whole backlog first."""
        s = self._s
        recovering = self._recovering
        limit = max(RECOVERY_PAGE // len(recovering), 64)
        parts = sorted(recovering)
        rows = await conn.fetch(
            f"SELECT m.seq, m.partition, m.entity_type, m.entity_id, m.payload, m.msg_id, "
            f"m.outside, m.reply, m.reply_to, m.reply_key, m.due, "
            f"{self._consumed_before()}, "
            f"(SELECT a.n FROM {s}.attempts a WHERE a.seq = m.seq), "
            f"{self._followed_now()}, m.timer_key, x.h "
            f"FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h) AS x "
            f"CROSS JOIN unnest($1::int[], $2::bigint[]) AS u(p, after) "
            f"LEFT JOIN LATERAL (SELECT * FROM {s}.mailbox m WHERE m.partition = u.p "
            f"AND m.seq > u.after ORDER BY m.seq LIMIT $3) AS m ON true",
            parts,
            [recovering[p][0] for p in parts],
            limit,
        )
        if rows:
            horizon = int(rows[0][15])
            self._floor = horizon if self._floor is None else min(self._floor, horizon)
        rows = sorted((r for r in rows if r[0] is not None), key=_first)
        suspect = {p for p in parts if recovering[p][1]}
        taken: dict[int, int] = {}
        for r in rows:
            taken[r[1]] = taken.get(r[1], 0) + 1
            recovering[r[1]][0] = r[0]  # rows come in seq order
        for p in parts:
            if taken.get(p, 0) < limit:
                del recovering[p]  # every row read
        mail, timers, calls = await self._take(conn, rows)
        suspects: dict[int, int] = {}
        for r in rows:
            if r[0] in self._held and r[1] in suspect and r[10] is None:
                suspects[r[0]] = r[12] or 0
                if r[12]:
                    self._attempted.add(r[0])
        return Recovery(
            next_id=self._base,
            mail=mail,
            timers=timers,
            suspects=suspects,
            calls=frozenset(calls),
        )

    async def _claim(
        self, conn: asyncpg.Connection, partitions: list[int]
    ) -> tuple[list[MailRow], list[TimerRow], list[int]]:
        """Rows of owned partitions inserted since the last claim's horizon."""
        s = self._s
        rows = await conn.fetch(
            f"SELECT m.seq, m.partition, m.entity_type, m.entity_id, m.payload, m.msg_id, "
            f"m.outside, m.reply, m.reply_to, m.reply_key, m.due, "
            f"{self._consumed_before()}, "
            f"x.h, {self._followed_now()}, m.timer_key "
            f"FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h) AS x "
            f"LEFT JOIN LATERAL (SELECT * FROM {s}.mailbox m WHERE m.partition = ANY($1::int[]) "
            f"AND m.ins_xid >= $2::text::xid8 AND (m.seq < $3 OR m.seq >= $4) "
            f"ORDER BY m.seq) AS m ON true",
            partitions,
            self._xmin,
            self._base,
            self._base + SESSION_IDS,
        )
        if rows:
            self._xmin = rows[0][12]
        return await self._take(conn, [r for r in rows if r[0] is not None])

    def _consumed_before(self) -> str:
        """A column: whether the row is an outside message consumed before (a
        resend). A scalar subquery, one index probe per row: as an `EXISTS` the
        planner may hash the whole `dedupe` table (every answered call) per claim."""
        return (
            f"m.outside AND (SELECT true FROM {self._s}.dedupe d "
            f"WHERE d.msg_id = m.msg_id) IS NOT NULL"
        )

    def _followed_now(self) -> str:
        """A column: whether the row's entity is followed (an InitPlan first:
        most of the time nobody follows anything)."""
        s = self._s
        return (
            f"(SELECT EXISTS (SELECT 1 FROM {s}.watches)) AND (SELECT true FROM "
            f"{s}.watches w WHERE w.entity_type = m.entity_type AND w.entity_id = m.entity_id "
            f"LIMIT 1) IS NOT NULL"
        )

    async def _take(
        self, conn: asyncpg.Connection, rows: Sequence[Any]
    ) -> tuple[list[MailRow], list[TimerRow], list[int]]:
        """Hold the rows not held yet; delete resends of outside messages
        already applied (or held)."""
        mail: list[MailRow] = []
        timers: list[TimerRow] = []
        calls: list[int] = []
        resent: list[tuple[int, int]] = []
        held, outside = self._held, self._outside
        for r in rows:
            seq = r[0]
            if r[13]:
                self._watched.add((r[2], r[3]))  # known before its batch is built
            elif self._watched:
                self._watched.discard((r[2], r[3]))  # nobody follows it any more
            if seq in held:
                continue
            msg_id = r[5] if r[6] else None
            if r[11] or (msg_id is not None and msg_id in outside):
                resent.append((r[1], seq))
                continue
            held[seq] = (r[1], msg_id, r[8] if r[7] else None, r[9] if r[7] else None)
            if msg_id is not None:
                outside[msg_id] = seq
            if r[10] is not None:
                timers.append((seq, r[2], r[3], r[4], float(r[10]), r[14]))
            else:
                mail.append((seq, r[2], r[3], r[4]))
            if r[7]:
                calls.append(seq)
        if resent:
            await conn.execute(
                f"DELETE FROM {self._s}.mailbox m USING unnest($1::int[], $2::bigint[]) "
                f"AS u(p, s) WHERE m.partition = u.p AND m.seq = u.s",
                [p for p, _ in resent],
                [q for _, q in resent],
            )
        return mail, timers, calls

    async def commit(self, batch: CommitBatch) -> None:
        try:
            await self._commit(batch)
        except FencedError:
            self._reset = True
            raise
        except _ERRORS as error:
            # The outcome is unknown (or the database refused the batch):
            # only the database is trusted, and what reloads is suspect.
            self._failed(error)
            self._suspect_all = True
            raise FencedError(frozenset(self._delivered), _text(error)) from error

    async def _commit(self, batch: CommitBatch) -> None:
        held = self._held
        scope_of = self.scope_of
        owned = self._delivered
        notices: list[tuple[str, str]] = []
        # Answers first: they need their rows' callers (popped below).
        answered: dict[int, AnswerRow] = {}
        local: list[tuple[uuid.UUID, AnswerRow]] = []
        by_caller: dict[tuple[str, bytes], list[tuple[uuid.UUID, bytes]]] = {}
        for answer in batch.answers:
            row = held.get(answer[0])
            if row is None or row[1] is None:
                continue
            answered[answer[0]] = answer
            msg_id = row[1]
            if self._is_local(msg_id):
                local.append((msg_id, answer))  # resolved after the commit
            elif row[2] is not None and row[3] is not None:
                body = entry(msg_id, answer[2], answer[1], answer[3], answer[4])
                by_caller.setdefault((row[2], row[3]), []).append((msg_id, body))
        for (to, key), entries in by_caller.items():
            notices.extend((to, payload) for payload in pack(key, entries))
        # Consumed mail and fired timers: rows deleted, outside ids recorded.
        del_p: list[int] = []
        del_s: list[int] = []
        dedupe: list[uuid.UUID] = []
        answers: list[tuple[uuid.UUID, int | None, bytes | None, str | None, str | None]] = []
        unattempt: list[int] = []
        for mail_id in batch.consumed:
            row = held.pop(mail_id, None)
            if row is None:
                continue  # stored and consumed by this batch: never written
            del_p.append(row[0])
            del_s.append(mail_id)
            if mail_id in self._attempted:
                self._attempted.discard(mail_id)
                unattempt.append(mail_id)
            outside_id = row[1]
            if outside_id is None:
                continue
            self._outside.pop(outside_id, None)
            reply = answered.get(mail_id)
            if reply is None:
                dedupe.append(outside_id)
            else:
                answers.append((outside_id, reply[2], reply[1], reply[3], reply[4]))
        fired_p: list[int] = []
        fired_s: list[int] = []
        for timer_id in batch.fired:
            row = held.pop(timer_id, None)
            if row is not None:
                del_p.append(row[0])
                del_s.append(timer_id)
                fired_p.append(row[0])  # must still be there: else cancelled elsewhere
                fired_s.append(timer_id)
        for timer_id in batch.cancelled:
            row = held.pop(timer_id, None)
            if row is not None:
                del_p.append(row[0])
                del_s.append(timer_id)
                if row[1] is not None and row[2] is not None and row[3] is not None:
                    answers.append((row[1], None, None, DROPPED, ""))  # a call's timer
                    body = entry(row[1], None, None, DROPPED, "")
                    notices.extend((row[2], n) for n in pack(row[3], [(row[1], body)]))
        # Keyed timers of other owners' entities: their pending row goes (`tk`).
        replaced = list(batch.cancels)
        # States: one row per entity (a turn and a passivation may meet in a batch).
        merged: dict[EntityKey, list[Any]] = {}
        for t, e, data, version, _, recent in batch.entities:
            if data is None and recent is None:
                continue
            found = merged.get((t, e))
            if found is None:
                merged[(t, e)] = [data, version, recent]
                continue
            if data is not None:
                found[0], found[1] = data, version
            if recent is not None:
                found[2] = recent
        history_n: dict[EntityKey, int] = {}
        for t, e, _, version in batch.history:
            history_n[(t, e)] = history_n.get((t, e), 0) + 1
            # (an event-sourced entity has no state in its row: only its count)
            merged.setdefault((t, e), [None, version, None])
        states: list[tuple[str, str, int, int, bytes | None, int, bytes | None]] = []
        for (t, e), (data, version, recent) in merged.items():
            states.append(
                (
                    t,
                    e,
                    scope_of(t, e),
                    version,
                    data,
                    history_n.get((t, e), 0 if data is None else 1),
                    None if recent is None else pack_recent(bounded(tuple(recent))),
                )
            )
        history: list[tuple[str, str, int, int, int, bytes]] = []
        count: dict[EntityKey, int] = {}
        for t, e, data, version in batch.history:
            k = count[(t, e)] = count.get((t, e), 0) + 1
            history.append((t, e, k, history_n[(t, e)], version, data))
        notices.extend((self._state_channel, state_hint(*key)) for key in history_n)
        watched = self._watched
        unknown = list({(r[0], r[1]) for r in batch.entities if (r[0], r[1]) not in watched})
        # New mail and timers; the owners of other partitions are told.
        mail: list[tuple[int, int, str, str, bytes, float | None, str | None]] = []
        mine: list[tuple[int, int]] = []
        remote: set[int] = set()
        for mail_id, t, e, payload in batch.mail:
            p = scope_of(t, e)
            mail.append((mail_id, p, t, e, payload, None, None))
            if p in owned:
                mine.append((mail_id, p))
            else:
                remote.add(p)
        dropped = set(batch.cancelled)  # set and replaced (or cancelled) in this batch
        for timer_id, t, e, payload, due, tkey in batch.timers:
            if timer_id in dropped:
                if tkey is not None and scope_of(t, e) not in owned:
                    replaced.append((t, e, tkey))  # it still replaces the pending one
                continue
            p = scope_of(t, e)
            mail.append((timer_id, p, t, e, payload, due, tkey))
            if p in owned:
                mine.append((timer_id, p))
            else:
                remote.add(p)
                if tkey is not None:
                    replaced.append((t, e, tkey))
        if remote:
            notices.append((self._mail_channel, ",".join(map(str, sorted(remote)))))
        if batch.events:
            notices.append((self._events_channel, "1"))
        parts = sorted(owned)
        mail_columns = _columns(mail, 7)
        args = [
            parts,
            [owned[p] for p in parts],
            self.node_id,
            [k[0] for k in unknown],
            [k[1] for k in unknown],
            del_p,
            del_s,
            *_columns(states, 7),
            *_columns(history, 6),
            *mail_columns[:6],
            _NIL,
            dedupe,
            *_columns(answers, 5),
            unattempt,
            batch.attempted,
            *_columns(notices, 2),
            *_columns(batch.snapshots, 5),
            batch.redelivered,
            mail_columns[6],
            *_columns(replaced, 3),
            fired_p,
            fired_s,
            self._clock.now(),
            *_columns(batch.forgotten, 2),
            INBOX,
        ]
        async with self.pool.acquire() as conn:
            status = await self._run(conn, batch, args)
        go, watched_t, fired_ok, watched_e = status[0], status[1], status[2], status[3]
        if not go:
            if not fired_ok:
                raise FencedError(
                    frozenset(), "a timer that fell due here was replaced or cancelled elsewhere"
                )
            if watched_t:
                self._watched.update(zip(watched_t, watched_e, strict=True))
                raise FencedError(
                    frozenset(), "an entity of the batch became followed while it was built"
                )
            raise FencedError(frozenset(parts), "their lease epochs moved")
        for dead in batch.dead:
            if dead.error_type in _UNREADABLE:
                log.error(
                    "node %s: a stored message became a dead letter: %s", self.node_id, dead.error
                )
        for mail_id, p in mine:
            held[mail_id] = (p, None, None, None)
        if batch.attempted:
            self._attempted.update(batch.attempted)
        for msg_id, answer in local:
            self._resolve(msg_id, answer)

    async def _run(self, conn: asyncpg.Connection, batch: CommitBatch, args: list[Any]) -> Any:
        """The commit statement, on its own (one round trip, its own
        transaction) unless dead letters or events need more statements; sent
        again while a lease row it locked changed under its snapshot (`mv`)."""
        statement = self._statement()
        more = bool(batch.dead or batch.events)
        for attempt in itertools.count(1):
            if not more:
                status = await conn.fetchrow(statement, *args)
            else:
                await conn.execute("BEGIN")
                try:
                    status = await conn.fetchrow(statement, *args)
                    if status[0]:
                        await self._write_more(conn, batch)
                    await conn.execute("COMMIT")  # (refused: nothing was written)
                except BaseException:
                    await _rollback(conn)
                    raise
            if not status[5] or attempt >= _MOVED_RETRIES:
                return status
        raise AssertionError("unreachable")

    def _statement(self) -> str:
        """The commit: one statement, every write conditional on the fence."""
        s = self._s
        go = "(SELECT go FROM g)"
        return (
            # `l`: the lease rows locked, as they are now (a row changed since
            # the statement's snapshot is read again under the lock); `l0`: as
            # the snapshot saw them. A row that changed (`mv`) may hide a
            # follower registered meanwhile from `w`: the statement is refused
            # and sent again (with a newer snapshot).
            f"WITH l AS (SELECT partition, owner, epoch, xmin::text AS v FROM {s}.leases "
            f"WHERE partition = ANY($1::int[]) FOR KEY SHARE), "
            f"l0 AS (SELECT partition, xmin::text AS v FROM {s}.leases "
            f"WHERE partition = ANY($1::int[])), "
            f"mv AS (SELECT EXISTS (SELECT 1 FROM l JOIN l0 ON l0.partition = l.partition "
            f"WHERE l.v <> l0.v) AS moved), "
            f"w AS (SELECT DISTINCT w.entity_type, w.entity_id FROM {s}.watches w "
            f"JOIN unnest($4::text[], $5::text[]) AS k(t, e) "
            f"ON w.entity_type = k.t AND w.entity_id = k.e), "
            f"fi AS (SELECT count(*) = cardinality($49::bigint[]) AS ok FROM {s}.mailbox m "
            f"JOIN unnest($48::int[], $49::bigint[]) AS u(p, q) ON m.partition = u.p "
            f"AND m.seq = u.q), "
            f"g AS (SELECT coalesce(bool_and(coalesce(l.owner = $3 AND l.epoch = u.e, false)), "
            f"true) AND NOT EXISTS (SELECT 1 FROM w) AND (SELECT ok FROM fi) "
            f"AND NOT (SELECT moved FROM mv) AS go "
            f"FROM unnest($1::int[], $2::bigint[]) AS u(p, e) LEFT JOIN l ON l.partition = u.p), "
            f"d AS (DELETE FROM {s}.mailbox m USING unnest($6::int[], $7::bigint[]) AS u(p, q) "
            f"WHERE m.partition = u.p AND m.seq = u.q AND {go}), "
            f"st AS (INSERT INTO {s}.states "
            f"(entity_type, entity_id, partition, version, data, activations, recent) "
            f"SELECT * FROM unnest($8::text[], $9::text[], $10::int[], $11::int[], "
            f"$12::bytea[], $13::bigint[], $14::bytea[]) AS u(t, e, p, v, d, a, r) WHERE {go} "
            # An ask's inbox is kept only while followed (`pachytype._inbox`), now.
            f"AND (u.t <> $53 OR EXISTS (SELECT 1 FROM {s}.watches w "
            f"WHERE w.entity_type = u.t AND w.entity_id = u.e)) "
            f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
            f"version = CASE WHEN excluded.data IS NULL THEN {s}.states.version "
            f"ELSE excluded.version END, data = coalesce(excluded.data, {s}.states.data), "
            f"activations = {s}.states.activations + excluded.activations, "
            f"recent = coalesce(excluded.recent, {s}.states.recent) "
            f"RETURNING entity_type, entity_id, activations), "
            f"h AS (INSERT INTO {s}.history (entity_type, entity_id, activations, version, data) "
            f"SELECT u.t, u.e, st.activations - u.n + u.k, u.v, u.d "
            f"FROM unnest($15::text[], $16::text[], $17::bigint[], $18::bigint[], $19::int[], "
            f"$20::bytea[]) AS u(t, e, k, n, v, d) "
            f"JOIN st ON st.entity_type = u.t AND st.entity_id = u.e ON CONFLICT DO NOTHING), "
            f"m AS (INSERT INTO {s}.mailbox (seq, partition, entity_type, entity_id, payload, "
            f"due, timer_key, msg_id) SELECT u.q, u.p, u.t, u.e, u.b, u.d, u.k, $27::uuid "
            f"FROM unnest($21::bigint[], $22::int[], $23::text[], $24::text[], $25::bytea[], "
            f"$26::float8[], $44::text[]) AS u(q, p, t, e, b, d, k) WHERE {go}), "
            f"tk AS (DELETE FROM {s}.mailbox x USING (SELECT DISTINCT * FROM "
            f"unnest($45::text[], $46::text[], $47::text[]) AS v(t, e, k)) AS v "
            f"WHERE x.entity_type = v.t AND x.entity_id = v.e AND x.timer_key = v.k "
            f"AND x.due > $50::float8 AND {go} RETURNING x.msg_id, x.reply), {dropped_answers(s)}, "
            f"x AS (INSERT INTO {s}.dedupe (msg_id, version, data, error_type, error) "
            f"SELECT * FROM unnest($29::uuid[], $30::int[], $31::bytea[], $32::text[], "
            f"$33::text[]) WHERE {go} UNION ALL "
            f"SELECT unnest($28::uuid[]), NULL, NULL, NULL, NULL WHERE {go}), "
            f"a AS (DELETE FROM {s}.attempts WHERE seq = ANY($34::bigint[]) AND {go}), "
            f"b AS (INSERT INTO {s}.attempts (seq, n) SELECT unnest($35::bigint[]), 1 WHERE {go} "
            f"ON CONFLICT (seq) DO UPDATE SET n = {s}.attempts.n + 1), "
            f"sn AS (INSERT INTO {s}.snapshots (entity_type, entity_id, seq, state, version) "
            f"SELECT * FROM unnest($38::text[], $39::text[], $40::bigint[], $41::bytea[], "
            f"$42::int[]) WHERE {go} ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
            f"seq = excluded.seq, state = excluded.state, version = excluded.version), "
            f"r AS (DELETE FROM {s}.dead_letters WHERE seq = ANY($43::bigint[]) AND {go}), "
            f"fo AS (DELETE FROM {s}.states t USING unnest($51::text[], $52::text[]) AS u(t, e) "
            f"WHERE t.entity_type = u.t AND t.entity_id = u.e AND {go}) "
            f"SELECT {go}, (SELECT array_agg(entity_type) FROM w), "
            f"(SELECT ok FROM fi), "
            f"(SELECT array_agg(entity_id) FROM w), "
            f"(SELECT count(pg_notify(c, n)) FROM unnest($36::text[], $37::text[]) AS u(c, n) "
            f"WHERE {go}), (SELECT moved FROM mv)"
        )

    async def _write_more(self, conn: asyncpg.Connection, batch: CommitBatch) -> None:
        """Dead letters and events, in the commit's transaction (after its fence)."""
        s = self._s
        if batch.dead:
            await conn.executemany(
                f"INSERT INTO {s}.dead_letters (entity_type, entity_id, message, error_type, "
                f"error, traceback, state_version, state, recent) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    (
                        d.entity_type,
                        d.id_text,
                        d.message,
                        storable_text(d.error_type),
                        storable_text(d.error),
                        storable_text(d.traceback),
                        d.version if d.state is not None else None,
                        d.state,
                        list(d.recent),
                    )
                    for d in batch.dead
                ],
            )
        if batch.events:
            counts: dict[str, int] = {}
            for t, _, _, _ in batch.events:
                counts[t] = counts.get(t, 0) + 1
            heads = await conn.fetch(
                f"INSERT INTO {s}.event_heads (entity_type, position) "
                f"SELECT * FROM unnest($1::text[], $2::bigint[]) "
                f"ON CONFLICT (entity_type) DO UPDATE SET "
                f"position = {s}.event_heads.position + excluded.position "
                f"RETURNING entity_type, position",
                list(counts),
                list(counts.values()),
            )
            next_at = {r[0]: int(r[1]) - counts[r[0]] for r in heads}
            rows = []
            for t, e, seq, payload in batch.events:
                next_at[t] += 1
                rows.append((next_at[t], t, e, seq, payload))
            await conn.execute(
                f"INSERT INTO {s}.events (position, entity_type, entity_id, seq, payload) "
                f"SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], "
                f"$5::bytea[])",
                *_columns(rows, 5),
            )

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        if not keys:
            return {}
        try:
            return await self._load_states(keys)
        except _ERRORS as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), _text(error)) from error

    async def _load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        rows = await self.pool.fetch(
            f"SELECT s.entity_type, s.entity_id, s.data, s.version, s.recent "
            f"FROM {self._s}.states s JOIN unnest($1::text[], $2::text[]) AS k(t, e) "
            f"ON s.entity_type = k.t AND s.entity_id = k.e",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r[0], r[1]): (r[2], r[3], unpack_recent(r[4])) for r in rows}

    async def load_journals(self, keys: Sequence[EntityKey]) -> dict[EntityKey, Journal]:
        try:
            return await read_journals(self.pool, self._s, keys)
        except _ERRORS as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), _text(error)) from error

    async def read_events(
        self, entity_type: str, id_text: str | None, after: int, limit: int
    ) -> list[LogRow]:
        return await read_events(self.pool, self._s, entity_type, id_text, after, limit)

    async def dead_letters(self) -> list[DeadRow]:
        return await read_dead(self.pool, self._s)

    async def close(self) -> None:
        """Nothing to release: the pool and the leases are the node's."""


async def read_journals(
    pool: asyncpg.Pool, s: str, keys: Sequence[EntityKey]
) -> dict[EntityKey, Journal]:
    """Latest snapshot and later events of each of `keys` (absent: neither)."""
    if not keys:
        return {}
    types = [k[0] for k in keys]
    ids = [k[1] for k in keys]
    snaps = await pool.fetch(
        f"SELECT s.entity_type, s.entity_id, s.seq, s.state, s.version FROM {s}.snapshots s "
        f"JOIN unnest($1::text[], $2::text[]) AS k(t, e) ON s.entity_type = k.t "
        f"AND s.entity_id = k.e",
        types,
        ids,
    )
    snapshots = {(r[0], r[1]): (int(r[2]), bytes(r[3]), int(r[4])) for r in snaps}
    rows = await pool.fetch(
        f"SELECT v.entity_type, v.entity_id, v.seq, v.payload FROM {s}.events v "
        f"JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, e, a) "
        f"ON v.entity_type = k.t AND v.entity_id = k.e AND v.seq > k.a "
        f"ORDER BY v.entity_type, v.entity_id, v.seq",
        types,
        ids,
        [snapshots.get(k, (0,))[0] for k in keys],
    )
    events: dict[EntityKey, list[tuple[int, bytes]]] = {}
    for r in rows:
        events.setdefault((r[0], r[1]), []).append((int(r[2]), bytes(r[3])))
    return {key: Journal(snapshots.get(key), events.get(key, [])) for key in {*snapshots, *events}}


async def read_events(
    pool: asyncpg.Pool, s: str, entity_type: str, id_text: str | None, after: int, limit: int
) -> list[LogRow]:
    """Committed events of one entity after sequence number `after`, or of a
    whole type after log position `after`, in order."""
    if id_text is not None:
        rows = await pool.fetch(
            f"SELECT position, entity_id, seq, payload FROM {s}.events "
            f"WHERE entity_type = $1 AND entity_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            entity_type,
            id_text,
            after,
            limit,
        )
    else:
        rows = await pool.fetch(
            f"SELECT position, entity_id, seq, payload FROM {s}.events "
            f"WHERE entity_type = $1 AND position > $2 ORDER BY position LIMIT $3",
            entity_type,
            after,
            limit,
        )
    return [(int(r[0]), r[1], int(r[2]), bytes(r[3])) for r in rows]


async def read_dead(pool: asyncpg.Pool, s: str) -> list[DeadRow]:
    """Every dead letter, oldest first (`at` as Unix time)."""
    rows = await pool.fetch(
        f"SELECT seq, entity_type, entity_id, message, error_type, error, traceback, "
        f"state_version, state, recent, extract(epoch FROM at)::float8 "
        f"FROM {s}.dead_letters ORDER BY seq"
    )
    return [
        DeadRow(
            entity_type=r[1],
            id_text=r[2],
            message=r[3],
            error_type=r[4],
            error=r[5],
            traceback=r[6],
            state=r[8],
            version=r[7] or 0,
            recent=tuple(r[9]),
            at=float(r[10]),
            id=int(r[0]),
        )
        for r in rows
    ]


async def _rollback(conn: asyncpg.Connection) -> None:
    """End a failed commit's transaction, or drop the connection: the pool does
    not reset connections, so it must never get one back in a transaction."""
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except BaseException:  # the commit's own error is the one to report
        conn.terminate()


def _first(row: Any) -> int:
    first: int = row[0]
    return first


def _text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as `width` column lists (for `unnest` parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
