"""PostgreSQL as a `Store` (`pachytype._store`): what a node's durable runtime
keeps in the database, owning the partitions its node holds leases on.

Design note
-----------
A node runs one `DurableRuntime` per worker over one `PostgresStore` each;
worker `w` serves the partitions `p` with `p % workers == w` that its node
holds (`_postgres.lease.Ownership`, kept by the node's heartbeat). This module
is the I/O: everything about scheduling is the shared runtime's. Its
parts: `claims.py` (taking mail in: claims, recovery pages), `commit.py`
(the fenced commit), `sql.py` (the statement texts), `holdings.py` (what
the store holds between calls), `reads.py` (journals, events, dead letters).

* **Ownership.** A store's scopes are partitions. `news()` compares the
  epochs the heartbeat holds now with those it last told the runtime:
  a partition whose epoch changed or vanished is lost, one new (or at a
  new epoch) is gained and recovered whole: every row of it, whoever took
  it before. Partitions taken from an owner whose lease expired (it died)
  are *suspect*: their mail may have been running, so it comes back with
  its durable attempt counts (`attempts`) and the runtime counts one more
  before it runs it again (a message that killed `MAX_ATTEMPTS` owners is
  dead-lettered unrun).
* **Leaving.** A partition lost is remembered with the epoch the runtime
  knew until the runtime `leave`s it: the recent messages of its entities
  not written yet are written then, only if its lease row is still ours at
  that epoch (locked `FOR KEY SHARE`, so a release waits for the write and
  the next owner reads them). A planned handover (`let_go`) waits for that.
* **Ids.** Claimed rows keep their `seq` (a bigserial, below 2**62) as
  their runtime id. Each time a store gains partitions it takes a number
  from `sessions` and its runtime numbers the mail it creates from
  `2**62 + session * 2**31` on, so ids never collide across nodes or with
  `seq`, and an entity taken over keeps sending in order: its new owner's
  range lies above every range used before (recovery and claims read mail
  in id order). Ids are not commit-ordered across writers, so the store
  records every consumed id (`commit.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence

from pachytype._inbox import INBOX
from pachytype._postgres.claims import Claims
from pachytype._postgres.commit import Commits
from pachytype._postgres.holdings import (
    NODE_IDS,
    SESSION_IDS,
    UNKNOWN_OUTCOME,
    error_text,
    log,
)
from pachytype._postgres.reads import read_dead, read_events, read_journals
from pachytype._postgres.recent import bounded, leaving_statement, pack_recent, unpack_recent
from pachytype._store import (
    DeadRow,
    EntityKey,
    EntityRow,
    FencedError,
    Journal,
    LogRow,
    News,
    Recovery,
    StoredState,
)


class PostgresStore(Claims, Commits):
    """One worker's share of a node's partitions, as a `Store`."""

    # -- the Store interface -----------------------------------------------------

    async def open(self, fingerprint: str, wake: Callable[[], None]) -> Recovery:
        self._wake = wake
        news = await self.news()
        return news.gained or Recovery(next_id=self._base, mail=[], timers=[])

    def ring(self) -> None:
        """Something may be new (a notification, a poll, ownership moved)."""
        self._wake()

    overlaps = True
    """Commits wait on the database: the runtime claims and builds beside them."""

    def owned(self) -> frozenset[int] | None:
        return frozenset(self._delivered)

    def steady(self) -> bool:
        if self._reset or self._backoff:
            return False
        delivered = self._delivered
        share = self._share
        n = 0
        for p, e in self.ownership.epochs.items():
            if share(p):
                if delivered.get(p) != e:
                    return False
                n += 1
        return n == len(delivered)

    def followed(self) -> set[EntityKey]:
        return self._watched

    async def news(self) -> News:
        if self._backoff:
            await asyncio.sleep(self._backoff)
        try:
            news = await self._news()
        except UNKNOWN_OUTCOME as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), error_text(error)) from error
        finally:
            self._told.set()
        self._backoff = 0.0
        return news

    async def let_go(self, partitions: Iterable[int], timeout: float) -> None:
        """Return once the runtime knows it no longer owns `partitions` (its
        `news()` said so, between two commits: no batch of theirs is built or
        in flight) and has left them (`leave`: their recent messages are
        written), or after `timeout` s. The heartbeat waits for this before
        it releases them, so a planned handover refuses no commit (a refused
        commit costs a reload of every partition) and loses no recent message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone = set(partitions)
        while (
            gone & (self._delivered.keys() | self._leaving.keys())
            and (left := deadline - loop.time()) > 0
        ):
            self._told.clear()
            self._wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._told.wait(), left)
        if late := gone & (self._delivered.keys() | self._leaving.keys()):
            log.info(
                "node %s releases partitions %s before its runtime let go of them "
                "(after %s s): a commit with them is refused, their recent messages are lost",
                self.node_id,
                sorted(late),
                timeout,
            )

    async def _news(self) -> News:
        current = {p: e for p, e in self.ownership.epochs.items() if self._share(p)}
        before = self._delivered
        if self._reset:
            self._reset = False
            self._held.clear()
            self._outside.clear()
            self._consuming.clear()
            self._consuming_ids.clear()
            self._recovering.clear()
            before = {}
        lost = frozenset(p for p, e in self._delivered.items() if current.get(p) != e)
        gained = sorted(p for p, e in current.items() if before.get(p) != e)
        if lost:
            self._unhold(lost)
            self._leaving.update((p, self._delivered[p]) for p in lost)
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
        async with self.connection() as conn:
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
        self._leaving.update((p, self._delivered[p]) for p in gone)
        self._delivered = {p: e for p, e in self._delivered.items() if p not in gone}
        return news

    async def leave(self, scopes: frozenset[int], recent: list[EntityRow]) -> None:
        """Write the recent messages of entities of partitions `news()` said are
        lost, where the lease is still ours at the epoch the runtime knew (a
        planned handover: `let_go` waits for this); lost for good elsewhere."""
        epochs = {p: self._leaving[p] for p in scopes if p in self._leaving}
        try:
            if recent and epochs:
                await self._write_leaving(epochs, recent)
        except UNKNOWN_OUTCOME as error:  # context only: nothing else depends on it
            log.warning(
                "node %s: recent messages of partitions %s not written: %s",
                self.node_id,
                sorted(epochs),
                error_text(error),
            )
        finally:
            for p in epochs:  # only now may the heartbeat release them
                if self._leaving.get(p) == epochs[p]:
                    del self._leaving[p]
            self._told.set()

    async def _write_leaving(self, epochs: dict[int, int], recent: list[EntityRow]) -> None:
        rows = [(r[0], r[1], self.scope_of(r[0], r[1]), r[5]) for r in recent if r[5] is not None]
        parts = sorted(epochs)
        await self.pool.execute(
            leaving_statement(self._s),
            parts,
            [epochs[p] for p in parts],
            self.node_id,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [pack_recent(bounded(r[3])) for r in rows],
            INBOX,
        )

    async def load_states(self, keys: Sequence[EntityKey]) -> dict[EntityKey, StoredState]:
        if not keys:
            return {}
        try:
            return await self._load_states(keys)
        except UNKNOWN_OUTCOME as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), error_text(error)) from error

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
        except UNKNOWN_OUTCOME as error:
            self._failed(error)
            raise FencedError(frozenset(self._delivered), error_text(error)) from error

    async def read_events(
        self, entity_type: str, id_text: str | None, after: int, limit: int
    ) -> list[LogRow]:
        return await read_events(self.pool, self._s, entity_type, id_text, after, limit)

    async def dead_letters(self) -> list[DeadRow]:
        return await read_dead(self.pool, self._s)

    async def close(self) -> None:
        """Give the kept connection back (the pool and the leases are the node's)."""
        await self.release_kept()
