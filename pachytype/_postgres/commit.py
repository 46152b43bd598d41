"""The commit of a `PostgresStore`: one batch of the runtime (consumed mail,
states, new mail and timers, answers, history, dead letters, events) written
by one fenced statement (`sql.commit_statement`), and what follows it (held
rows released, local callers resolved).

Design note
-----------
* **One statement per commit, fenced: one round trip.** A commit is one
  statement, its own transaction: it locks the lease rows of the owned
  partitions it touches `FOR KEY SHARE` and checks owner and epoch (every
  write in it is conditional on that check, so a stale owner writes nothing
  and gets `FencedError`; a partition it does not touch may move meanwhile:
  `_fenced`, and every owned one for batches with rarer parts). It
  has only the parts the batch has (its *shape*: a call's batch deletes,
  writes states, answers and notifies; `sql.py`), so the server starts no
  write with nothing to write and the node sends no empty columns. A
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
* **Every consumed id recorded.** Ids are not commit-ordered across
  writers, so a commit deletes each consumed row, and an outside message's
  id goes to `dedupe` (a resend is dropped when claimed).
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

import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import orjson

from pachytype._codec import storable_text
from pachytype._core.timers import DROPPED
from pachytype._inbox import INBOX
from pachytype._postgres import sql
from pachytype._postgres.holdings import UNKNOWN_OUTCOME, StoreRecords, error_text
from pachytype._postgres.recent import bounded, pack_recent
from pachytype._postgres.reply import PAYLOAD_LIMIT, entry, pack
from pachytype._store import AnswerRow, CommitBatch, EntityKey, FencedError

log = logging.getLogger("pachytype.postgres")

_NIL: Final = uuid.UUID(int=0)
"""`msg_id` of mail between entities (only outside messages are deduplicated by id)."""

_UNREADABLE: Final = frozenset({"DecodeError", "UnknownEntityError"})
"""Dead letters of stored mail that no longer decodes: logged (a deploy broke it)."""

_MOVED_RETRIES: Final = 5
"""Times a commit statement is sent again because a lease row it locked changed
under its snapshot (a follower registered, or a renewal), before it is refused."""


def state_hint(entity_type: str, id_text: str) -> str:
    """The NOTIFY payload telling followers of an entity that it has new
    states in `history` (`*`, for every followed entity, if it is too long)."""
    text = orjson.dumps([entity_type, id_text]).decode()
    return text if len(text) <= PAYLOAD_LIMIT else "*"


class Commits(StoreRecords):
    """The commits of a `PostgresStore`."""

    async def commit(self, batch: CommitBatch) -> None:
        try:
            await self._commit(batch)
        except FencedError:
            self._reset = True
            raise
        except UNKNOWN_OUTCOME as error:
            # The outcome is unknown (or the database refused the batch):
            # only the database is trusted, and what reloads is suspect.
            self._failed(error)
            self._suspect_all = True
            raise FencedError(frozenset(self._delivered), error_text(error)) from error

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
        consumed_ids: list[uuid.UUID] = []
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
            consumed_ids.append(outside_id)
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
        parts = _fenced(batch, owned, del_p, states, mine, replaced, unattempt, scope_of)
        # The statement has the parts the batch has (`sql.py`): each non-empty
        # one sets its bit and adds its columns, in `sql.PARTS` order.
        args: list[Any] = [parts, [owned[p] for p in parts], self.node_id]
        shape = 0
        if unknown:
            shape |= sql.WATCHED
            args += _columns(unknown, 2)
        if fired_p:
            shape |= sql.FIRED
            args += (fired_p, fired_s)
        if del_p:
            shape |= sql.DELETED
            args += (del_p, del_s)
        if states:
            shape |= sql.STATES
            args += _columns(states, 7)
            args.append(INBOX)
        if history:
            shape |= sql.HISTORY
            args += _columns(history, 6)
        if mail:
            shape |= sql.MAIL
            args += _columns(mail, 7)
            args.append(_NIL)
        if replaced:
            shape |= sql.REPLACED
            args += _columns(replaced, 3)
            args.append(self._clock.now())
        if answers:
            shape |= sql.ANSWERS
            args += _columns(answers, 5)
        if dedupe:
            shape |= sql.DEDUPE
            args.append(dedupe)
        if unattempt:
            shape |= sql.UNATTEMPT
            args.append(unattempt)
        if batch.attempted:
            shape |= sql.ATTEMPTED
            args.append(batch.attempted)
        if batch.snapshots:
            shape |= sql.SNAPSHOTS
            args += _columns(batch.snapshots, 5)
        if batch.redelivered:
            shape |= sql.REDELIVERED
            args.append(batch.redelivered)
        if batch.forgotten:
            shape |= sql.FORGOTTEN
            args += _columns(batch.forgotten, 2)
        if notices:
            shape |= sql.NOTICES
            args += _columns(notices, 2)
        # Until it is done, a claim beside this commit skips what it deletes and
        # knows what it inserts in owned partitions (`claims.py`).
        number = self._commit_no = self._commit_no + 1
        for seq in del_s:
            self._consuming[seq] = number
        for msg_id in consumed_ids:
            self._consuming_ids[msg_id] = number
        for mail_id, p in mine:
            held[mail_id] = (p, None, None, None)
        try:
            async with self.connection() as conn:
                status = await self._run(conn, batch, shape, args)
        finally:
            self._done_no = number
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
        if batch.attempted:
            self._attempted.update(batch.attempted)
        for msg_id, answer in local:
            self._resolve(msg_id, answer)

    async def _run(
        self, conn: asyncpg.Connection, batch: CommitBatch, shape: int, args: list[Any]
    ) -> Any:
        """The commit statement of `shape`, on its own (one round trip, its own
        transaction) unless dead letters or events need more statements; sent
        again while a lease row it locked changed under its snapshot (`mv`)."""
        statement = sql.commit_statement(self._s, shape)
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


def _fenced(
    batch: CommitBatch,
    owned: dict[int, int],
    deleted: Sequence[int],
    states: Sequence[tuple[str, str, int, int, bytes | None, int, bytes | None]],
    mine: Sequence[tuple[int, int]],
    replaced: Sequence[tuple[str, str, str]],
    unattempt: Sequence[int],
    scope_of: Callable[[str, str], int],
) -> list[int]:
    """The owned partitions a commit's fence locks and checks: those it
    touches (its consumed rows', its entities', its new mail's in owned
    partitions), so that it is refused only if one of them moved (the
    `Store` contract), and locks fewer lease rows; every owned partition for
    a batch with parts whose partitions are not at hand (dead letters,
    events, attempts, snapshots, forgotten states, replaced timers), or
    none at all."""
    if (
        batch.dead
        or batch.events
        or batch.attempted
        or batch.redelivered
        or batch.snapshots
        or batch.forgotten
        or replaced
        or unattempt
    ):
        return sorted(owned)
    touched = set(deleted)
    touched.update(s[2] for s in states)
    touched.update(p for _, p in mine)
    for t, e, data, _, _, recent in batch.entities:
        if data is None and recent is None:  # (not in `states`: its watches are checked too)
            touched.add(scope_of(t, e))
    if not touched or not touched.issubset(owned):
        return sorted(owned)
    return sorted(touched)


async def _rollback(conn: asyncpg.Connection) -> None:
    """End a failed commit's transaction, or drop the connection: the pool does
    not reset connections, so it must never get one back in a transaction."""
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except BaseException:  # the commit's own error is the one to report
        conn.terminate()


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as `width` column lists (for `unnest` parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
