"""After a commit: `apply` makes a batch's effects visible (states cached
and shown to followers, calls resolved, timers armed, acks), then bounds
memory (`evict_states`, `drop_idle`). When a commit is refused or ownership
moves: `fenced` applies none of a batch and forgets every entity, `drop`
forgets the entities of scopes lost. When the store fails or closes:
`fail_waiting` fails everything that waits."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pachytype._address import Key
from pachytype._core.turn import UNBORN
from pachytype._errors import PachytypeError
from pachytype._runtime.durable.mail import arm
from pachytype._runtime.durable.recent import recent_row, unnote, wake_when_due
from pachytype._runtime.durable.records import (
    _LIVE_KEPT,
    Future,
    _Live,
    _Pending,
)
from pachytype._store import (
    CommitBatch,
    EntityRow,
)

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def apply(rt: DurableRuntime, pending: _Pending, events: bool = False) -> None:
    """A batch is durable: make its effects visible (`events`: it appended events)."""
    if events:
        rt.event_signal.notify()
    cache = rt._cache
    followers = rt._followers
    ready = rt._dready
    for live, state, followed, _ in pending.turns:
        key = live.key
        if state is not UNBORN:
            cache.pop(key, None)
            cache[key] = state
            if followers and key in followers:
                for q in followers[key]:
                    for s in followed or (state,):
                        q.put_nowait(s)
        live.busy = False
        if live.inbox:
            ready.append(live)
        else:
            live.scheduled = False
    if pending.turns:
        wake_when_due(rt)
    for fut, value in pending.results:
        if not fut.done():
            fut.set_result(value)
    for fut, failure in pending.failures:
        if not fut.done():
            fut.set_exception(failure)
    for timer in pending.timers:
        arm(rt, timer)
    for ack in pending.acks:
        if not ack.done():
            ack.set_result(None)
    if ready:
        rt._wake_up()
    if rt._backlog <= rt.max_backlog // 2:
        rt._drained.set()
    if len(cache) > rt.cache_size:
        evict_states(rt)
    if len(rt._dlive) > rt._live_limit:
        drop_idle(rt)


def drop(rt: DurableRuntime, scopes: frozenset[int]) -> list[EntityRow]:
    """Forget every entity of `scopes` (lost to another owner): its mail and
    timers stay stored, and its new owner recovers them. Returns their
    recent messages not written yet (for `Store.leave`)."""
    scope_of = rt.store.scope_of
    moved = moved_error(rt, scopes)
    recent: list[EntityRow] = []
    for key, live in list(rt._dlive.items()):
        if scope_of(live.etype.name, live.id_text) in scopes:
            del rt._dlive[key]
            forget(rt, live, moved)
            if live.recent_dirty:
                recent.append(recent_row(live))
    for key in [k for k in rt._cache if scope_of_key(rt, k) in scopes]:
        del rt._cache[key]
        rt._seqs.pop(key, None)
    for timer_id, timer in list(rt._armed.items()):
        if scope_of(timer.out.etype.name, timer.out.id_text) in scopes:
            del rt._armed[timer_id]
            if timer.handle is not None:
                timer.handle.cancel()
            if timer.out.tkey is not None:  # its new owner keeps it
                rt._dkeyed.fired(timer.out.address._key, timer.out.tkey, timer)
    rt._fired = [t for t in rt._fired if scope_of(t.out.etype.name, t.out.id_text) not in scopes]
    rt._to_load = [live for live in rt._to_load if live.key in rt._dlive]
    rt._waiting = [live for live in rt._waiting if live.key in rt._dlive]
    if rt._recent_rows:
        recent.extend(r for r in rt._recent_rows if scope_of(r[0], r[1]) in scopes)
        rt._recent_rows = [r for r in rt._recent_rows if scope_of(r[0], r[1]) not in scopes]
    if rt._backlog <= rt.max_backlog // 2:
        rt._drained.set()
    return recent


def scope_of_key(rt: DurableRuntime, key: Key) -> int:
    """The scope of a cached entity (by its key)."""
    name, id = key
    return rt.store.scope_of(name, rt.codec.encode_id(name, id))


def forget(rt: DurableRuntime, live: _Live, moved: PachytypeError) -> None:
    """Take an entity out of memory (its record may still sit in a ready
    queue: with no inbox it is skipped there)."""
    for mail_id, _, fut, _ in live.inbox:
        rt._suspects.pop(mail_id, None)
        rt._cleared.discard(mail_id)
        rt._answer_ids.discard(mail_id)
        if fut is not None and not fut.done():
            fut.set_exception(moved)
    rt._backlog -= len(live.inbox)
    live.inbox.clear()
    live.scheduled = live.urgent = False
    rt._cache.pop(live.key, None)
    rt._seqs.pop(live.key, None)


def moved_error(rt: DurableRuntime, scopes: Iterable[int] | None) -> PachytypeError:
    """The error of a call whose entity moved to another owner while it waited."""
    which = "some of its scopes" if scopes is None else f"scope(s) {sorted(scopes)}"
    return PachytypeError(
        f"the {rt.name} store lost {which} to another owner while this call waited: "
        f"its message is stored and is handled by the new owner, but its answer cannot "
        f"come back here; read the entity's state with `await eco.state(ref)`"
    )


def fenced(rt: DurableRuntime, pending: _Pending) -> None:
    """A commit was refused (ownership lost under it): apply none of it, put
    its outside requests back in line, forget every entity, and let the
    store's next `news()` recover what it still owns."""
    requests = pending.requests
    kept: set[int] = set()
    for request in requests:
        if request.ack is not None:
            kept.add(id(request.ack))
        kept.update(id(o.fut) for o in request.outs if o.fut is not None)
    moved = moved_error(rt, None)
    failing = [f for f in inbox_futures(rt) if id(f) not in kept]
    failing.extend(f for f, _ in pending.results if id(f) not in kept)
    failing.extend(f for f, _ in pending.failures if id(f) not in kept)
    for request in reversed(requests):
        (rt._calls if request.ack is None else rt._incoming).appendleft(request)
    for timer in [*rt._armed.values(), *rt._fired]:
        if timer.handle is not None:
            timer.handle.cancel()
    rt._armed.clear()
    rt._fired = []
    unnote(pending)
    for live in rt._dlive.values():
        # Records stay (with their recent messages); their mail comes back
        # from the store, entities of scopes lost go with the next news.
        live.inbox.clear()
        live.scheduled = live.urgent = live.busy = False
    rt._dready.clear()
    rt._urgent.clear()
    rt._cache.clear()
    rt._seqs.clear()
    rt._suspects.clear()
    rt._cleared.clear()
    rt._waiting = []
    rt._to_load = []
    rt._answer_ids.clear()
    rt._recent_rows = []
    rt._startup = CommitBatch()
    rt._backlog = 0
    rt._pending = None
    rt._drained.set()
    for fut in failing:
        if not fut.done():
            fut.set_exception(moved)
    rt._news = True  # recover every scope still owned


def inbox_futures(rt: DurableRuntime) -> Iterator[Future]:
    """Futures of callers whose messages sit in inboxes."""
    for live in rt._dlive.values():
        for _, _, fut, _ in live.inbox:
            if fut is not None:
                yield fut


def fail_waiting(rt: DurableRuntime, error: BaseException) -> None:
    """Fail everything that waits (the store failed, or it closes): inbox
    callers, queued requests, timers' callers and the batch in flight."""
    futures: list[Future] = []
    for live in rt._dlive.values():
        futures.extend(fut for _, _, fut, _ in live.inbox if fut is not None)
    for request in [*rt._incoming, *rt._calls]:
        if request.ack is not None:
            futures.append(request.ack)
        futures.extend(o.fut for o in request.outs if o.fut is not None)
    for timer in [*rt._armed.values(), *rt._fired]:
        if timer.handle is not None:
            timer.handle.cancel()
        if timer.out.fut is not None:
            futures.append(timer.out.fut)
    for pending in (rt._pending, rt._next):
        if pending is not None:
            futures.extend(pending.futures())
    rt._incoming.clear()
    rt._calls.clear()
    rt._armed.clear()
    rt._fired.clear()
    rt._dkeyed.clear()
    rt._pending = rt._next = None
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)
    rt._drained.set()


def evict_states(rt: DurableRuntime) -> None:
    """Drop the least recently committed cached states (and a tenth more)."""
    cache = rt._cache
    excess = len(cache) - rt.cache_size + rt.cache_size // 10
    seqs = rt._seqs
    for key in list(itertools.islice(cache, excess)):
        del cache[key]
        seqs.pop(key, None)


def drop_idle(rt: DurableRuntime) -> None:
    """Passivate: forget live records with no mail (their states stay stored;
    their recent messages are written with the next commit)."""
    kept: dict[Key, _Live] = {}
    for key, live in rt._dlive.items():
        if live.scheduled or live.inbox:
            kept[key] = live
        elif live.recent_dirty:
            rt._recent_rows.append(recent_row(live))
    rt._dlive = kept
    # With many entities holding mail, do not rescan at every commit.
    rt._live_limit = max(_LIVE_KEPT, 2 * len(rt._dlive))
