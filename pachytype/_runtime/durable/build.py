"""Building one group commit (`build`): the outside requests it takes
(`take_requests`, calls first and a short batch while they wait), the fired
timers, then turns of ready entities up to `max_batch` messages; the sweep
bound of consumed mail (`low_water`). Also the suspect limits: after a
crash, mail that was running may run again only once its attempt is
counted (`clear_suspects`, `suspect_limit`, `MAX_ATTEMPTS`)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from pachytype._address import Address
from pachytype._core.held import Held
from pachytype._runtime.dispatch import _SLICE
from pachytype._runtime.durable.mail import number, put
from pachytype._runtime.durable.recent import flush
from pachytype._runtime.durable.records import (
    _CALL_BATCH,
    _GC_EVERY,
    _SCANS_PER_COMMIT,
    _Live,
    _Pending,
    _Request,
)
from pachytype._runtime.durable.recovery import hold
from pachytype._runtime.durable.turns import turn_durably
from pachytype._store import CommitBatch

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def build(rt: DurableRuntime) -> tuple[CommitBatch, _Pending] | None:
    """The next group commit and its effects, or None if there is nothing to do."""
    batch, rt._startup = rt._startup, CommitBatch()
    if rt._recent_rows:
        batch.entities.extend(rt._recent_rows)
        rt._recent_rows = []
    pending = _Pending()
    budget = rt.max_batch
    short = bool(rt._calls) and not rt._short
    rt._short = short  # never two short batches in a row: sends must progress
    if rt._calls:
        # Waiting callers first: their mail and (urgent queue) their turns.
        take_requests(rt, rt._calls, batch, pending, len(rt._calls))
    if short:
        budget = _CALL_BATCH
    else:
        if rt._incoming:
            take_requests(rt, rt._incoming, batch, pending, rt.max_batch)
        if rt._fired:
            fired, rt._fired = rt._fired, []
            for timer in fired:
                if timer.id in rt._answer_ids:
                    # A delayed call from another process: its row (and
                    # its caller) stay; it is consumed under its own id.
                    put(rt, timer.out, timer.id)
                    continue
                batch.fired.append(timer.id)
                number(rt, timer.out, batch, pending, due_now=True)
    cache = rt._cache
    for queue in (rt._urgent, rt._dready):
        while queue and budget > 0:
            live = queue.popleft()
            live.urgent = False
            if live.busy or not live.inbox:
                continue  # a stale entry: served from the other queue
            state = cache.get(live.key, cache)
            if state is cache:
                rt._to_load.append(live)
            elif type(state) is Held:
                hold(rt, live, state)
            else:
                limit = _SLICE
                if rt._suspects:
                    limit = suspect_limit(rt, live, min(len(live.inbox), _SLICE))
                    if limit == 0:  # its next message waits for its attempt to be counted
                        live.scheduled = False
                        rt._waiting.append(live)
                        rt._wake_up()
                        continue
                live.busy = True
                budget -= turn_durably(rt, live, state, batch, pending, limit)
    flush(rt, batch, pending)
    if not (batch or pending.acks or pending.turns):
        return None
    if batch.mail and batch.consumed:
        # Mail stored and consumed by the same transaction need not be
        # written at all: the consumer's cursor and state say it all.
        gone = set(batch.consumed)
        batch.mail = [row for row in batch.mail if row[0] not in gone]
    rt._commits += 1
    if rt._commits >= rt._next_sweep:
        batch.forget_below = low_water(rt)
        spacing = max(_GC_EVERY, len(rt._dlive) // _SCANS_PER_COMMIT)
        rt._next_sweep = rt._commits + spacing
    return batch, pending


def take_requests(
    rt: DurableRuntime, incoming: deque[_Request], batch: CommitBatch, pending: _Pending, limit: int
) -> None:
    """Take outside requests into the batch until `limit` messages are taken (ids,
    inboxes; the common case inline)."""
    taken = 0
    mail = batch.mail
    owned = rt._owned  # None: every entity is ours (the inline path below)
    lives = rt._dlive
    ready = rt._dready
    while incoming and taken < limit:
        request = incoming.popleft()
        next_id = rt._next_id
        # The common case (no delay, no call) inline: this loop runs once
        # per message sent from outside.
        for out in request.outs:
            if out.delay > 0 or out.fut is not None or owned is not None or out.tkey is not None:
                rt._backlog += next_id - rt._next_id
                rt._next_id = next_id
                number(rt, out, batch, pending)
                next_id = rt._next_id
                continue
            mail.append((next_id, out.etype.name, out.id_text, out.payload))
            live = lives.get(out.address._key)
            if live is None:
                live = lives[out.address._key] = _Live(out.address, out.etype, out.id_text)
            live.inbox.append((next_id, out.message, None, out.payload))
            next_id += 1
            if not live.scheduled:
                live.scheduled = True
                ready.append(live)
        rt._backlog += next_id - rt._next_id  # the inline ones
        rt._next_id = next_id
        taken += len(request.outs)
        pending.requests.append(request)
        if request.redeliver is not None:
            batch.redelivered.append(request.redeliver)
        if request.forget is not None:
            forget_entity(rt, request.forget, batch)
        if request.ack is not None:
            pending.acks.append(request.ack)


def forget_entity(rt: DurableRuntime, ref: Address[Any], batch: CommitBatch) -> None:
    """Delete an entity's stored state in the batch, and forget it here."""
    etype = rt.registry.get(ref.entity_type, ref.id)
    key = ref._key
    row = (etype.name, rt._id_text(etype, ref))
    batch.forgotten.append(row)
    rt._cache.pop(key, None)
    live = rt._dlive.get(key)
    if live is not None and not live.inbox and not live.scheduled:
        del rt._dlive[key]
    if rt._recent_rows:
        rt._recent_rows = [r for r in rt._recent_rows if (r[0], r[1]) != row]


def low_water(rt: DurableRuntime) -> int:
    """The smallest id of any message not yet consumed (all of them are in memory)."""
    low = rt._next_id
    for live in rt._dlive.values():
        if live.inbox and live.inbox[0][0] < low:
            low = live.inbox[0][0]
    return low


async def clear_suspects(rt: DurableRuntime) -> None:
    """After a crash, count an attempt for the next suspects before they run.

    Suspects never run before run in chunks of up to `max_batch`; one that
    was running when a session died runs alone, so a message that kills
    its process is isolated after one crash and dead-lettered after
    `max_attempts`, while the rest of its chunk commits."""
    order = sorted(i for i in rt._suspects if i not in rt._cleared)
    chunk: list[int] = []
    if order and rt._suspects[order[0]] > 0:
        chunk = order[:1]
    else:
        for mail_id in order[: rt.max_batch]:
            if rt._suspects[mail_id] > 0:
                break
            chunk.append(mail_id)
    if chunk:
        await rt.store.commit(CommitBatch(attempted=chunk))
        rt._cleared.update(chunk)
    waiting, rt._waiting = rt._waiting, []
    for live in waiting:
        if live.inbox and not live.scheduled:
            live.scheduled = True
            rt._dready.append(live)


def suspect_limit(rt: DurableRuntime, live: _Live, n: int) -> int:
    """How many of the next `n` messages may run: up to the first suspect
    whose attempt is not counted yet (those run are no longer suspects)."""
    suspects, cleared, inbox = rt._suspects, rt._cleared, live.inbox
    for j in range(n):
        mail_id = inbox[j][0]
        if mail_id in suspects:
            if mail_id not in cleared:
                return j
            del suspects[mail_id]
            cleared.discard(mail_id)
    return n
