"""A PostgreSQL node: heartbeat and lease upkeep, and the workers that claim
mail of owned partitions, activate and commit (the I/O around `_pg_batch`).

Design note
-----------
* **Workers.** A node runs `workers` loops; worker `w` serves the owned
  partitions `p` with `p % workers == w`, so two workers of a node never
  touch the same entity. Each loop is one transaction of four round trips:
  (1) `BEGIN` and the lock of its partitions' lease rows (`FOR KEY SHARE`,
  fencing, see `_pg_lease`), sent together; (2) the claim of up to `batch`
  due rows of the partitions still ours at our epoch, partition by
  partition through the `(partition, seq)` index (`ORDER BY seq ... FOR
  UPDATE SKIP LOCKED`; an entity lives in one partition, so its mail comes
  in order; the starting partition rotates so none starves), each row
  saying whether its id was consumed before (dedupe) and whether its
  entity is followed; (then the states it has not cached, if any;
  `_pg_batch.run_batch` runs in between); (3) one statement that writes
  everything: consumed rows deleted, states upserted (with their recent
  messages), new mail, dedupe ids with the answers of calls, history of
  followed entities, and every notification (wake-ups of other nodes'
  partitions, answers to callers, hints to followers); (4) `COMMIT`.
* **Follow is in the claim.** A follower registers its watch while holding
  the entity's lease row `FOR UPDATE` (see `ecosystems._postgres`), which
  waits for a batch holding it and holds off the next one's step (1); so
  the claim of every batch committed after the follower's read sees the
  watch, and writes each state of that entity to `history`.
* **Effects after commit.** Local `call` futures, the state cache and
  wake-ups of local workers are applied only once the commit returned; any
  error drops the worker's cache (the commit may or may not have happened,
  so only the database is trusted).
* **The cache is fenced too.** Cached states of a partition are valid only
  for the epoch they were read under; a new epoch (the partition was owned
  by someone else in between) starts from the database again.
* **Wake-ups.** `LISTEN/NOTIFY` (mail for a partition, membership changes)
  wakes the right worker at once; every loop also polls every
  `poll_interval` seconds, and sleeps until the next delayed message is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson

from pachytype._budget import DEFAULT_BUDGET
from pachytype._codec import Codec, storable_text
from pachytype._core.deadletters import raw_dead_row
from pachytype._errors import ActivationError, PachytypeError
from pachytype._pg_batch import Cached, Key, Mail, Outcome, Recent, Reply, run_batch
from pachytype._pg_lease import Membership, Ownership, channel
from pachytype._pg_reply import PAYLOAD_LIMIT, entry, pack
from pachytype._pg_schema import quote_schema, replaced_timers
from pachytype._registry import Registry

log = logging.getLogger("pachytype.postgres")

MAX_ALONE: Final = 3
"""Failed batches a row may cause on its own before it is dead-lettered unrun."""

RETRY_BLOCKED: Final = 30.0
"""Seconds before an entity held by a state that cannot be loaded is tried again."""

_SWEEP_EVERY: Final = 40
"""Heartbeats between sweeps of old dedupe ids, replies and dead nodes."""

LocalCalls = dict[uuid.UUID, "asyncio.Future[Any]"]


class Node:
    """Owns partitions of one schema and activates their entities."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        codec: Codec,
        membership: Membership,
        *,
        workers: int,
        batch: int,
        poll_interval: float,
        local_calls: LocalCalls,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.budget = DEFAULT_BUDGET
        """Seconds one activation may run (the owner sets it below its lease)."""
        self.codec = codec
        self.membership = membership
        self.ownership: Ownership = membership.ownership
        self.schema = membership.schema
        self.node_id = membership.node_id
        self.partitions = membership.partitions
        self.workers = workers
        self.batch = batch
        self.poll_interval = poll_interval
        self.local_calls = local_calls
        self.blocked: dict[Key, PachytypeError] = {}
        """Entities held because their stored state cannot be loaded; their mail
        stays in place, in order."""
        self.retry_blocked = RETRY_BLOCKED
        self._blocked_at: dict[Key, float] = {}
        self.activations = 0
        self._s = quote_schema(self.schema)
        self._wakes = [asyncio.Event() for _ in range(workers)]
        self._members = asyncio.Event()
        self._caches: list[dict[int, tuple[int, dict[Key, Cached | None]]]] = [
            {} for _ in range(workers)
        ]
        self._recent = Recent()
        self._due = [0.0] * workers
        """Per worker: when (monotonic) its next delayed message falls due."""
        self._turns = [0] * workers
        self._limits = [batch] * workers  # rows per claim: halved after a failed batch
        self._alone: list[Any] = [None] * workers  # the row claimed alone, if limit is 1
        self._failed: dict[uuid.UUID, int] = {}  # a row's failed batches, claimed alone
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._mail_channel = channel(self.schema, "mail")
        self._reply_channel = channel(self.schema, "reply")
        self._state_channel = channel(self.schema, "state")

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Join (fingerprint check), take a first share of partitions, start working."""
        async with self.pool.acquire() as conn:
            await self.membership.join(conn)
            await self.membership.beat(conn)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._heartbeat(), name=f"{self.node_id} heartbeat"))
        for w in range(self.workers):
            self._tasks.append(loop.create_task(self._work(w), name=f"{self.node_id} worker {w}"))

    async def stop(self) -> None:
        """Finish the batches in flight, hand every partition over, leave."""
        self._stopping = True
        for event in self._wakes:
            event.set()
        heartbeat, *workers = self._tasks
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await asyncio.gather(*workers, return_exceptions=True)
        self._tasks.clear()
        try:
            async with self.pool.acquire() as conn:
                await self.membership.leave(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("node %s could not hand its partitions over: %s", self.node_id, error)

    def wake(self, partition: int) -> None:
        """New mail for `partition`: wake the worker serving it (if it is ours)."""
        if partition in self.ownership.epochs:
            self._wakes[partition % self.workers].set()

    def members_changed(self) -> None:
        """A node joined or left: run a heartbeat now."""
        self._members.set()

    # -- heartbeat ---------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.membership.lease / 4
        for beat in itertools.count():
            try:
                async with self.pool.acquire() as conn:
                    changed = await self.membership.beat(conn)
                    if beat % _SWEEP_EVERY == _SWEEP_EVERY - 1:
                        await self.membership.sweep(conn)
                if changed:
                    self._drop_stale_caches()
                    for event in self._wakes:
                        event.set()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("node %s heartbeat failed: %s", self.node_id, error)
            except Exception:
                # A bug must not silently stop the heartbeat (the leases would
                # stay renewed by nobody); log it whole and beat again.
                log.exception("node %s heartbeat failed unexpectedly", self.node_id)
            self._members.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._members.wait(), interval)

    def _drop_stale_caches(self) -> None:
        epochs = self.ownership.epochs
        for cache in self._caches:
            for p in [p for p, (epoch, _) in cache.items() if epochs.get(p) != epoch]:
                del cache[p]

    # -- workers -----------------------------------------------------------------

    async def _work(self, w: int) -> None:
        wake = self._wakes[w]
        while not self._stopping:
            parts = {p: e for p, e in self.ownership.epochs.items() if p % self.workers == w}
            wake.clear()
            handled = 0
            delay = self.poll_interval
            if parts:
                try:
                    async with self.pool.acquire() as conn:
                        handled = await self._batch(conn, w, parts)
                        if not handled:
                            delay = await self._next_due(conn, list(parts))
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    self._caches[w].clear()  # the commit may have happened: trust only the db
                    log.warning("node %s worker %d: batch failed: %s", self.node_id, w, error)
                    await self._after_failure(w, error)
                    await asyncio.sleep(min(self.poll_interval, 0.2))
                    continue
                except Exception as error:
                    # A dead worker would strand its partitions while the
                    # heartbeat keeps their leases: log the bug and go on.
                    self._caches[w].clear()
                    log.exception("node %s worker %d: batch failed unexpectedly", self.node_id, w)
                    await self._after_failure(w, error)
                    await asyncio.sleep(min(self.poll_interval, 0.2))
                    continue
                if handled:
                    self._limits[w] = min(self.batch, self._limits[w] * 2)
            now = time.monotonic()
            if handled >= self.batch:
                await asyncio.sleep(0)
                continue
            if not handled:
                self._due[w] = now + delay
            # A batch that was not full took every due row of its partitions:
            # what comes next wakes us (a notification, a local send, our own
            # commit), or falls due (`_due`); no claim round trips meanwhile.
            timeout = min(self.poll_interval, self._due[w] - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(timeout, 0.001))

    async def _after_failure(self, w: int, error: BaseException) -> None:
        """Split a failing batch until the failing row is alone; a row that
        fails `MAX_ALONE` batches alone becomes a dead letter, unrun, and the
        others go on (a connection lost or a fenced commit fails whole
        batches too, so only a row that keeps failing alone is blamed)."""
        if self._limits[w] > 1:
            self._limits[w] //= 2
            return
        row = self._alone[w]
        if row is None:
            return
        count = self._failed.get(row["msg_id"], 0) + 1
        self._failed[row["msg_id"]] = count
        if count < MAX_ALONE:
            return
        del self._failed[row["msg_id"]]
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._bury(row, error, count)

    async def _bury(self, row: Any, error: BaseException, count: int) -> None:
        s = self._s
        blamed = PachytypeError(
            f"a message to entity {row['entity_type']!r} (id text {row['entity_id']!r}) failed "
            f"{count} batches on its own ({type(error).__name__}: {error}); it was not run "
            f"again and is a dead letter, and the entity went on. Fix what fails, then "
            f"redeliver it"
        )
        dead = raw_dead_row(
            row["entity_type"], row["entity_id"], row["payload"], blamed, None, 0, []
        )
        async with self.pool.acquire() as conn, conn.transaction():
            gone = await conn.fetchval(
                f"DELETE FROM {s}.mailbox WHERE msg_id = $1 RETURNING msg_id", row["msg_id"]
            )
            if gone is None:
                return  # consumed meanwhile (by a later, successful batch)
            await conn.execute(
                f"INSERT INTO {s}.dead_letters (entity_type, entity_id, message, error_type, "
                f"error, traceback, state_version, state, recent) "
                f"VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7)",
                dead.entity_type,
                dead.id_text,
                dead.message,
                dead.error_type,
                dead.error,
                dead.traceback,
                list(dead.recent),
            )
        log.error("node %s: %s", self.node_id, blamed)

    async def _next_due(self, conn: asyncpg.Connection, parts: list[int]) -> float:
        due = await conn.fetchval(
            f"SELECT extract(epoch FROM min(deliver_at) - now())::float8 FROM {self._s}.mailbox "
            f"WHERE partition = ANY($1::int[]) AND deliver_at > now()",
            parts,
        )
        return self.poll_interval if due is None else float(due)

    def _unblock_due(self) -> None:
        """Give held entities another try now and then: someone may have fixed
        the state row (or deployed code that loads it)."""
        now = time.monotonic()
        for key in [k for k, at in self._blocked_at.items() if now - at >= self.retry_blocked]:
            del self._blocked_at[key]
            self.blocked.pop(key, None)

    async def _batch(self, conn: asyncpg.Connection, w: int, parts: dict[int, int]) -> int:
        s = self._s
        if self._blocked_at:
            self._unblock_due()
        partitions = list(parts)
        self._turns[w] += 1
        shift = self._turns[w] % len(partitions)
        order = partitions[shift:] + partitions[:shift]  # rotate: every partition gets its turn
        # BEGIN and the lease locks in one round trip (the simple protocol
        # takes several statements but no parameters: partitions are ints,
        # the node id a quoted literal). The locks fence the whole batch: a
        # takeover (FOR UPDATE) waits for our commit, and the claim below,
        # a later statement, sees only partitions still ours at our epoch.
        await conn.execute(
            f"BEGIN; SELECT 1 FROM {s}.leases WHERE partition IN "
            f"({','.join(map(str, partitions))}) AND owner = {_literal(self.node_id)} "
            f"FOR KEY SHARE"
        )
        try:
            handled = await self._claim_and_run(conn, w, parts, order)
        except BaseException:
            await _rollback(conn)
            raise
        return handled

    async def _claim_and_run(
        self, conn: asyncpg.Connection, w: int, parts: dict[int, int], order: list[int]
    ) -> int:
        s = self._s
        rows = await conn.fetch(
            f"SELECT m.ctid, m.msg_id, m.partition, m.entity_type, m.entity_id, m.payload, "
            f"m.outside, m.reply, m.reply_to, m.reply_key, "
            f"m.outside AND EXISTS (SELECT 1 FROM {s}.dedupe d WHERE d.msg_id = m.msg_id), "
            # (an InitPlan, once per claim: most of the time nobody follows anything)
            f"(SELECT EXISTS (SELECT 1 FROM {s}.watches)) AND EXISTS (SELECT 1 FROM {s}.watches w "
            f"WHERE w.entity_type = m.entity_type AND w.entity_id = m.entity_id) "
            f"FROM (SELECT p FROM unnest($1::int[], $5::bigint[]) AS u(p, e) "
            f"WHERE EXISTS (SELECT 1 FROM {s}.leases l "
            f"WHERE l.partition = u.p AND l.owner = $6 AND l.epoch = u.e)) AS p, LATERAL ("
            f"SELECT ctid, * FROM {s}.mailbox WHERE partition = p.p "
            f"AND (deliver_at IS NULL OR deliver_at <= now()) "
            f"AND (entity_type, entity_id) NOT IN "
            f"(SELECT * FROM unnest($3::text[], $4::text[])) "
            f"ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED) AS m LIMIT $2",
            order,
            self._limits[w],
            [k[0] for k in self.blocked],
            [k[1] for k in self.blocked],
            [parts[p] for p in order],
            self.node_id,
        )
        if not rows:
            await conn.execute("COMMIT")
            return 0
        self._alone[w] = rows[0] if len(rows) == 1 else None
        mail = [Mail._make(r) for r in rows]
        cache = self._caches[w]
        known: dict[Key, Cached | None] = {}
        missing: list[Key] = []
        for m in mail:
            key = (m.entity_type, m.id_text)
            epoch, entries = cache.setdefault(m.partition, (parts[m.partition], {}))
            if epoch != parts[m.partition]:  # cached under another ownership
                entries = {}
                cache[m.partition] = (parts[m.partition], entries)
            if key in entries:
                known[key] = entries[key]
            elif key not in known:
                missing.append(key)
                known[key] = None
        stored = await self._load(conn, missing)
        for key in stored:
            del known[key]
        deployment = self.membership.deployment  # nodes of another version: check mail
        out = run_batch(
            self.registry,
            self.codec,
            self.partitions,
            mail,
            known,
            stored,
            self._recent,
            budget=self.budget,
            gate=None if deployment.uniform else deployment.check_send,
        )
        await self._write(conn, out)
        await conn.execute("COMMIT")
        self._after_commit(w, parts, mail, out)
        return len(rows)

    async def _load(
        self, conn: asyncpg.Connection, keys: list[Key]
    ) -> dict[Key, tuple[int, bytes, int, bytes | None]]:
        if not keys:
            return {}
        rows = await conn.fetch(
            f"SELECT s.entity_type, s.entity_id, s.version, s.data, s.activations, s.recent "
            f"FROM {self._s}.states s JOIN unnest($1::text[], $2::text[]) AS k(t, e) "
            f"ON s.entity_type = k.t AND s.entity_id = k.e",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows}

    async def _write(self, conn: asyncpg.Connection, out: Outcome) -> None:
        """Everything the batch changes, in one statement: consumed mail
        deleted, states upserted, new mail, dedupe ids (with the answers of
        calls), history of followed entities, replies for version-1 callers,
        and every notification (wake-ups, answers, follow hints)."""
        s = self._s
        # Consumed outside ids, apart from those of calls (kept with their answers).
        answered = [(r.msg_id, *_answer(r)) for r in out.replies]
        called = {r.msg_id for r in out.replies}
        plain = [m for m in out.dedupe if m not in called] if called else out.dedupe
        legacy = [(r.msg_id, *_answer(r)) for r in out.replies if r.reply_to is None]
        mail = _columns(out.mail, 7)
        await conn.fetchval(
            f"WITH d AS (DELETE FROM {s}.mailbox WHERE ctid = ANY($1::tid[])), "
            f"st AS (INSERT INTO {s}.states "
            f"(entity_type, entity_id, partition, version, data, activations, recent) "
            f"SELECT * FROM unnest($2::text[], $3::text[], $4::int[], $5::int[], $6::bytea[], "
            f"$7::bigint[], $8::bytea[]) ON CONFLICT (entity_type, entity_id) DO UPDATE SET "
            f"version = excluded.version, data = excluded.data, "
            f"activations = excluded.activations, recent = excluded.recent), "
            f"m AS (INSERT INTO {s}.mailbox "
            f"(msg_id, partition, entity_type, entity_id, payload, deliver_at, timer_key) "
            f"SELECT u.i, u.p, u.t, u.e, u.b, "
            f"CASE WHEN u.d > 0 THEN now() + u.d * interval '1 second' END, u.k "
            f"FROM unnest($9::uuid[], $10::int[], $11::text[], $12::text[], $13::bytea[], "
            f"$14::float8[], $33::text[]) AS u(i, p, t, e, b, d, k)), "
            f"{replaced_timers(s, '$34', '$35', '$36')}, "
            f"x AS (INSERT INTO {s}.dedupe (msg_id, version, data, error_type, error) "
            f"SELECT * FROM unnest($15::uuid[], $16::int[], $17::bytea[], $18::text[], "
            f"$19::text[]) UNION ALL SELECT unnest($32::uuid[]), NULL, NULL, NULL, NULL), "
            f"h AS (INSERT INTO {s}.history (entity_type, entity_id, activations, version, data) "
            f"SELECT * FROM unnest($20::text[], $21::text[], $22::bigint[], $23::int[], "
            f"$24::bytea[]) ON CONFLICT DO NOTHING), "
            f"r AS (INSERT INTO {s}.replies (msg_id, version, data, error_type, error) "
            f"SELECT * FROM unnest($25::uuid[], $26::int[], $27::bytea[], $28::text[], "
            f"$29::text[]) ON CONFLICT (msg_id) DO NOTHING) "
            f"SELECT count(pg_notify(c, n)) FROM unnest($30::text[], $31::text[]) AS u(c, n)",
            out.consumed,
            *_columns(out.states, 7),
            *mail[:6],
            *_columns(answered, 5),
            *_columns(out.committed, 5),
            *_columns(legacy, 5),
            *_columns(self._notices(out), 2),
            plain,
            mail[6],
            *_columns(out.timers, 3),
        )
        if out.dead:
            await conn.executemany(
                f"INSERT INTO {s}.dead_letters (entity_type, entity_id, message, error_type, "
                f"error, traceback, state_version, state, recent) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                out.dead,
            )

    def _notices(self, out: Outcome) -> list[tuple[str, str]]:
        """`(channel, payload)` of every notification the batch sends at commit:
        wake-ups of other nodes' partitions, answers to callers in other
        processes, hints to followers."""
        notices: list[tuple[str, str]] = []
        remote = sorted({m[1] for m in out.mail if m[1] not in self.ownership.epochs})
        if remote:
            notices.append((self._mail_channel, ",".join(map(str, remote))))
        by_caller: dict[tuple[str, bytes], list[tuple[uuid.UUID, bytes]]] = {}
        for r in out.replies:
            if r.msg_id in self.local_calls:
                continue  # resolved in this process after the commit
            if r.reply_to is None or r.reply_key is None:
                notices.append((self._reply_channel, str(r.msg_id)))  # a version-1 caller
                continue
            body = entry(r.msg_id, *_answer(r))
            by_caller.setdefault((r.reply_to, r.reply_key), []).append((r.msg_id, body))
        for (to, key), entries in by_caller.items():
            notices.extend((to, payload) for payload in pack(key, entries))
        for t, i in out.followed:
            notices.append((self._state_channel, state_hint(t, i)))
        return notices

    def _after_commit(self, w: int, parts: dict[int, int], mail: list[Mail], out: Outcome) -> None:
        cache = self._caches[w]
        partition_of = {(m.entity_type, m.id_text): m.partition for m in mail}
        for key, cached in out.cache.items():
            p = partition_of[key]
            epoch, entries = cache.setdefault(p, (parts[p], {}))
            if epoch == parts[p]:
                entries[key] = cached
        now = time.monotonic()
        for key, error in out.blocked.items():
            if key not in self.blocked:
                self.blocked[key] = error
                self._blocked_at[key] = now
                log.error("node %s: %s", self.node_id, error)
        for error in out.undecodable:
            log.error("node %s: a stored message became a dead letter: %s", self.node_id, error)
        for reply in out.replies:
            fut = self.local_calls.get(reply.msg_id)
            if fut is None or fut.done():
                continue
            if reply.error is None:
                fut.set_result(reply.state)
            else:
                failure = ActivationError(reply.entity_type, reply.id, reply.message, reply.error)
                failure.__cause__ = reply.error
                fut.set_exception(failure)
        now = time.monotonic()
        for m in out.mail:
            if m[5] <= 0:
                self.wake(m[1])
            elif m[1] in self.ownership.epochs:
                v = m[1] % self.workers
                self._due[v] = min(self._due[v], now + m[5])
        self.activations += out.activations


def state_hint(entity_type: str, id_text: str) -> str:
    """The NOTIFY payload telling followers of an entity that it has new
    states in `history` (`*`, for every followed entity, if it is too long)."""
    text = orjson.dumps([entity_type, id_text]).decode()
    return text if len(text) <= PAYLOAD_LIMIT else "*"


_NO_ANSWER: Final = (None, None, None, None)


def _answer(r: Reply) -> tuple[int | None, bytes | None, str | None, str | None]:
    """A call's answer as `(version, data, error type, error)` columns."""
    if r.error is None:
        return r.version, r.data, None, None
    # Texts as any store (and a NOTIFY payload) can keep them: no NUL, no lone surrogate.
    return None, None, storable_text(type(r.error).__qualname__), storable_text(str(r.error))


def _literal(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings: only
    quotes are special)."""
    return "'" + text.replace("'", "''") + "'"


async def _rollback(conn: asyncpg.Connection) -> None:
    """End a failed batch's transaction, or drop the connection: the pool does
    not roll back (see `_keep_session`), so it must never get one back in a
    transaction."""
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except BaseException:  # the batch's own error is the one to report
        conn.terminate()


def _columns(rows: list[Any], width: int) -> list[list[Any]]:
    """Rows as `width` column lists (for `unnest` parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
