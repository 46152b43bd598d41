"""Taking mail in on PostgreSQL: the claims of a `PostgresStore` (rows new in
the partitions it holds) and the recovery of partitions it gains (every row,
page by page), both handing rows to the runtime once (`_take`).

Design note
-----------
* **Claims without locks.** Mail written by other processes (clients,
  other nodes) rings the bell through a NOTIFY of its partition (and a
  poll every `poll_interval`, for notifications lost with a LISTEN
  connection). A claim reads the rows of owned partitions inserted by
  transactions at or after the previous claim's snapshot horizon
  (`ins_xid >= pg_snapshot_xmin`): every row that claim could not see
  was inserted by a transaction that was in progress or had not begun, so
  none is missed, whatever order inserters commit in; rows read twice are
  known by id and skipped. No row is written to claim it.
* **Recovery in pages.** A gained partition is read whole, whoever took
  its rows before, in `seq` order, about `RECOVERY_PAGE` rows per `news()`
  so the runtime works (and learns of a lost partition) between two pages;
  its claims start from the first page's horizon once it is read (see
  `PostgresStore._news`).
* **Resends.** An outside message consumed before (its id in `dedupe`) or
  held already is deleted when taken, never handed over twice.
* **Claims beside a commit.** The runtime claims while a commit is under
  way (`Store.overlaps`), so a claim's snapshot may predate that commit:
  it would still see the rows the commit deletes, whose ids have already
  left `held`. The commit lists them (`_consuming`, by seq and by outside
  id) until a claim that began after it finished has run: such a claim
  cannot see them. The rows a commit inserts in owned partitions are held
  before it is sent, so a claim that sees them once committed skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._postgres.holdings import SESSION_IDS, StoreRecords
from pachytype._postgres.sql import consumed_before, followed_now
from pachytype._store import MailRow, Recovery, TimerRow

RECOVERY_PAGE: Final = 50_000
"""Rows of gained partitions read per `news()` (the runtime works between two pages)."""


class Claims(StoreRecords):
    """Claims and recovery pages of a `PostgresStore`."""

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
            f"{consumed_before(s)}, "
            f"(SELECT a.n FROM {s}.attempts a WHERE a.seq = m.seq), "
            f"{followed_now(s)}, m.timer_key, x.h "
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
        done = self._done_no
        rows = await conn.fetch(
            f"SELECT m.seq, m.partition, m.entity_type, m.entity_id, m.payload, m.msg_id, "
            f"m.outside, m.reply, m.reply_to, m.reply_key, m.due, "
            f"{consumed_before(s)}, "
            f"x.h, {followed_now(s)}, m.timer_key "
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
        taken = await self._take(conn, [r for r in rows if r[0] is not None])
        if self._consuming or self._consuming_ids:
            # A claim begun after a commit finished sees none of what it deleted.
            self._consuming = {q: n for q, n in self._consuming.items() if n > done}
            self._consuming_ids = {i: n for i, n in self._consuming_ids.items() if n > done}
        return taken

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
        consuming, consuming_ids = self._consuming, self._consuming_ids
        for r in rows:
            seq = r[0]
            if r[13]:
                self._watched.add((r[2], r[3]))  # known before its batch is built
            elif self._watched:
                self._watched.discard((r[2], r[3]))  # nobody follows it any more
            if seq in held or seq in consuming:
                continue  # (being deleted by the commit under way)
            msg_id = r[5] if r[6] else None
            if r[11] or (msg_id is not None and (msg_id in outside or msg_id in consuming_ids)):
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


def _first(row: Any) -> int:
    first: int = row[0]
    return first
