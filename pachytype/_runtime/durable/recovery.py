"""What the store gives back: mail and timers recovered at open or with
scopes gained (`recover`), the store's news between two commits
(`take_news`), undecodable mail turned into dead letters (`unreadable`);
and the states of entities about to run (`load`, `rebuild_journal`),
holding those that cannot be loaded (`hold`, `retry_later`)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import TYPE_CHECKING

from pachytype._core.deadletters import raw_dead_row
from pachytype._core.held import Held
from pachytype._core.journal import rebuild
from pachytype._core.turn import UNBORN, Unreadable
from pachytype._errors import PoisonMessageError
from pachytype._registry import EntityType
from pachytype._runtime.dispatch import address_of
from pachytype._runtime.durable.apply import drop
from pachytype._runtime.durable.mail import arm, drop_timer, put
from pachytype._runtime.durable.records import (
    Codec,
    Out,
    _Live,
    _Timer,
)
from pachytype._runtime.durable.turns import error_answer
from pachytype._store import (
    Journal,
    MailRow,
    News,
    Recovery,
    TimerRow,
)

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def recover(rt: DurableRuntime, recovery: Recovery) -> None:
    """Put what the store recovered (at open, or scopes gained) in inboxes, arm timers."""
    rt._next_id = max(rt._next_id, recovery.next_id)
    rt._suspects.update(recovery.suspects)
    take_mail(rt, recovery.calls, recovery.mail, recovery.timers)


def take_mail(
    rt: DurableRuntime, calls: frozenset[int], mail: list[MailRow], timers: list[TimerRow]
) -> None:
    """Stored mail and timers into inboxes and armed (`calls`: ids whose
    sender, elsewhere, awaits an answer)."""
    if calls:
        rt._answer_ids.update(calls)
    for row in mail:
        recover_mail(rt, row)
    for timer_row in timers:
        recover_timer(rt, timer_row)


async def take_news(rt: DurableRuntime) -> None:
    """Ownership changes and mail from other processes (no commit in flight)."""
    rt._news = False
    news = await rt.store.news()
    rt._owned = rt.store.owned()
    await take(rt, news)


async def take(rt: DurableRuntime, news: News) -> None:
    """Apply what `news()` said (scopes lost only with no commit in flight)."""
    if news.lost:
        # Their recent messages not written yet go to the store while the
        # scopes are still ours (a planned handover waits for this).
        await rt.store.leave(news.lost, drop(rt, news.lost))
    if news.gained is not None:
        recover(rt, news.gained)
    take_mail(rt, news.calls, news.mail, news.timers)


def recover_mail(rt: DurableRuntime, row: MailRow) -> None:
    """Put one stored message in its entity's inbox (as a dead letter to be, if
    it cannot be read or ran too often when its process died)."""
    mail_id, type_name, id_text, payload = row
    try:
        etype = rt.registry.get(type_name, id_text)
        id = rt.codec.decode_id(type_name, id_text)
    except Exception as error:
        # No mail of this (type, id) can ever be delivered: each row is a
        # dead letter now, consumed in id order.
        unreadable(rt, mail_id, type_name, id_text, payload, error)
        return
    try:
        message: object = decode_message(rt, etype, id, payload)
    except Exception as error:
        # The entity exists and may have earlier mail waiting (it may be
        # held): the bad row keeps its place in the inbox and becomes a
        # dead letter when its turn comes, so the consumed cursor never
        # passes mail that is still waiting.
        message = Unreadable(payload, error)
    attempts = rt._suspects.get(mail_id, 0)
    if attempts >= rt.max_attempts:
        # It was running each time a session died: dead-letter it unrun.
        del rt._suspects[mail_id]
        message = Unreadable(payload, PoisonMessageError(etype.name, id, attempts))
    out = Out(address_of(etype, id), etype, id_text, message, payload, 0.0, None)
    rt._id_texts[out.address._key] = id_text
    put(rt, out, mail_id)


def recover_timer(rt: DurableRuntime, row: TimerRow) -> None:
    """Arm one stored timer (a dead letter if its message cannot be read)."""
    timer_id, type_name, id_text, payload, due, tkey = row
    try:
        out = decode_out(rt, type_name, id_text, payload)
    except Exception as error:
        # Deleted with its dead letter; no entity's consumed cursor moves
        # (a timer id is not in any entity's mail order).
        rt._startup.dead.append(raw_dead_row(type_name, id_text, payload, error, None, 0, []))
        rt._startup.fired.append(timer_id)
        return
    out.tkey = tkey
    timer = _Timer(timer_id, out, due)
    if tkey is not None:  # (from another process: it is the later one)
        old = rt._dkeyed.schedule(out.address._key, tkey, timer)
        drop_timer(rt, old, rt._startup, cancelled=False)
    arm(rt, timer)


def unreadable(
    rt: DurableRuntime, mail_id: int, type_name: str, id_text: str, payload: bytes, error: Exception
) -> None:
    """Mail of an entity that cannot exist: a dead letter, consumed, answered."""
    if mail_id in rt._answer_ids:
        rt._answer_ids.discard(mail_id)
        rt._startup.answers.append(error_answer(mail_id, 0, error))
    rt._startup.dead.append(raw_dead_row(type_name, id_text, payload, error, None, 0, []))
    rt._startup.consumed.append(mail_id)
    rt._startup.entities.append((type_name, id_text, None, 0, mail_id, None))


def decode_out(rt: DurableRuntime, type_name: str, id_text: str, payload: bytes) -> Out:
    """A stored message as an `Out` to its entity."""
    etype = rt.registry.get(type_name, id_text)
    id = rt.codec.decode_id(type_name, id_text)
    return Out(
        address_of(etype, id),
        etype,
        id_text,
        decode_message(rt, etype, id, payload),
        payload,
        0.0,
        None,
    )


def decode_message(rt: DurableRuntime, etype: EntityType, id: Hashable, payload: bytes) -> object:
    """A stored message, decoded and checked against its entity type."""
    message = rt.codec.decode_message(etype.name, payload, id)
    etype.check_message(id, message)
    return message


async def load(rt: DurableRuntime) -> None:
    """Read the states of entities about to run whose state is not cached."""
    # A bounded slice per call: reads block the loop, like commits.
    lives, rt._to_load = rt._to_load[: rt.max_batch], rt._to_load[rt.max_batch :]
    keys = [(live.etype.name, live.id_text) for live in lives]
    journaled = [k for live, k in zip(lives, keys, strict=True) if live.etype.event_sourced]
    skip = set(journaled)
    rest = [k for k in keys if k not in skip] if journaled else keys
    found = await rt.store.load_states(rest) if rest else {}
    journals = await rt.store.load_journals(journaled) if journaled else {}
    for live, key in zip(lives, keys, strict=True):
        if live.etype.event_sourced:
            state, seq = rebuild_journal(rt.codec, live.etype, live.address._id, journals.get(key))
            if type(state) is Held:
                retry_later(rt, live, state)
            rt._cache[live.key] = state
            rt._seqs[live.key] = seq
            rt._dready.append(live)
            continue
        stored = found.get(key)
        if stored is not None and stored[2] and not live.recent:
            restore_recent(rt, live, stored[2])
        if stored is None or stored[0] is None:
            rt._cache[live.key] = UNBORN
        else:
            try:
                state = rt.codec.decode_state(
                    live.etype.name, live.address._id, stored[0], stored[1]
                )
            except Exception as error:
                state = Held(error)
                retry_later(rt, live, state)
            rt._cache[live.key] = state
        rt._dready.append(live)
    rt._wake_up()


def restore_recent(rt: DurableRuntime, live: _Live, stored: tuple[bytes, ...]) -> None:
    """Give an entity loaded from disk the recent messages it had before, so a
    dead letter after a restart still shows them (undecodable ones as bytes)."""
    for payload in stored:
        try:
            message = decode_message(rt, live.etype, live.address._id, payload)
        except Exception as error:
            message = Unreadable(payload, error)
        live.recent.append(message)
        live.stored.append(payload)


def retry_later(rt: DurableRuntime, live: _Live, held: Held) -> None:
    """Read a held entity's state again after `retry_held` seconds: a repaired
    row or a deploy that can load it releases it, and its mail goes on in order."""
    loop = asyncio.get_running_loop()

    def retry() -> None:
        rt._held_retries.discard(handle)
        if rt._cache.get(live.key) is held:
            del rt._cache[live.key]
            if live.inbox and not live.scheduled:
                live.scheduled = True
                rt._dready.append(live)
                rt._wake_up()

    handle = loop.call_later(rt.retry_held, retry)
    rt._held_retries.add(handle)


def hold(rt: DurableRuntime, live: _Live, held: Held) -> None:
    """Leave a held entity's mail waiting; its callers get the load error."""
    live.scheduled = False
    for i, (mail_id, message, fut, payload) in enumerate(live.inbox):
        if fut is not None:
            if not fut.done():
                fut.set_exception(held.error)
            live.inbox[i] = (mail_id, message, None, payload)


def rebuild_journal(
    codec: Codec, etype: EntityType, id: Hashable, journal: Journal | None
) -> tuple[object, int]:
    """An event-sourced entity's state (UNBORN, or Held if it cannot be
    rebuilt) and event count, from its stored journal (`pachytype._core.journal`)."""
    if journal is None:
        return UNBORN, 0
    name = etype.name
    snapshot, events = journal.snapshot, journal.events
    seq = events[-1][0] if events else (0 if snapshot is None else snapshot[0])
    try:
        state = (
            UNBORN if snapshot is None else codec.decode_state(name, id, snapshot[1], snapshot[2])
        )
        decoded = [(n, codec.decode_event(name, id, data)) for n, data in events]
        return rebuild(etype, id, state, decoded), seq
    except Exception as error:
        return Held(error), seq
