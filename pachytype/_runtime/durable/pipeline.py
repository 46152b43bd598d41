"""The commit pipeline: between two commits, take the store's news, build a
batch, commit it and apply it (`cycle`); on a store whose commits wait on a
server (`Store.overlaps`: Postgres), take mail and build the next batch
while a commit is under way (`beside`).

Design note
-----------
* **One commit at a time, in build order.** A batch built beside a commit
  is sent once that commit is done; a refused (fenced) commit takes it
  along, unsent (`refused`): both are applied in no part.
* **Build late unless a full batch waits.** Beside a commit the next batch
  is built only when a full one is ready (a backlog of `max_batch`
  messages: a drain), so the server and this loop work at once. Otherwise
  it is built after the commit, as large as the arrivals make it: a batch
  built early would be smaller, and each commit costs the database about
  the same whatever its size.
* **Ownership between two commits.** Mail, timers, calls and recovery
  pages the store rings for are taken beside a commit while the store is
  `steady()`; scopes lost are told once the commit under way is applied
  (`later`), and no batch is built beside a commit while an ownership
  change waits to be told.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pachytype._runtime.durable.apply import apply
from pachytype._runtime.durable.build import build, clear_suspects
from pachytype._runtime.durable.records import _Pending
from pachytype._runtime.durable.recovery import load, take, take_news
from pachytype._store import CommitBatch, FencedError

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime

Built = tuple[CommitBatch, _Pending]


async def cycle(rt: DurableRuntime) -> bool:
    """Between two commits: take the news, build a batch and commit it, then
    (while work keeps coming) the batches built beside each commit. False
    when there was nothing to commit."""
    if rt._news:
        await take_news(rt)
    if rt._stopping:  # after the news: scopes lost are left, not saved at the stop
        return False
    if rt._waiting:
        await clear_suspects(rt)
    built = build(rt)
    # Pending before any await: if the store fails in `load`, the built
    # batch's waiters are failed too, not forgotten.
    rt._pending = None if built is None else built[1]
    if rt._to_load:
        await load(rt)
    if built is None:
        return False
    while built is not None:
        batch, pending = built
        if rt.store.overlaps:
            built = await commit_beside(rt, batch, pending)
        else:
            await rt.store.commit(batch)  # written inline (SQLite): nothing runs beside it
            built = None
        rt._pending, rt._next = rt._next, None
        apply(rt, pending, bool(batch.events))
        if rt._later is not None:
            news, rt._later = rt._later, None
            await take(rt, news)
        # Let senders and callers run between two commits.
        await asyncio.sleep(0)
    return True


async def commit_beside(rt: DurableRuntime, batch: CommitBatch, pending: _Pending) -> Built | None:
    """Commit `batch` on a store whose commits wait on a server, doing what
    `beside` does meanwhile; return once it is durable, with the batch built
    beside it (or None)."""
    commit = asyncio.ensure_future(rt.store.commit(batch))
    try:
        built = await beside(rt, commit)
    except FencedError:
        await commit  # its own outcome first: it may have been written
        rt._pending = None
        apply(rt, pending, bool(batch.events))
        raise
    except BaseException:
        commit.cancel()  # the dispatcher is cancelled (stopping)
        raise
    await commit
    return built


async def beside(rt: DurableRuntime, commit: asyncio.Future[None]) -> Built | None:
    """While `commit` is under way: take the mail the store rings for, and
    build the next batch if a full one is ready. Returns the batch built
    (sent after this commit), or None once the commit is done."""
    await asyncio.sleep(0)  # the commit's first step: its statement goes out
    while not commit.done():
        takes = rt._news and rt.store.steady() and not rt._waiting
        if takes:
            rt._news = False
            news = await rt.store.news()
            rt._owned = rt.store.owned()
            if news.lost:
                rt._later = news  # told once the commit under way is applied
                break
            await take(rt, news)
        if rt._backlog >= rt.max_batch and not rt._waiting:
            break
        if commit.done():
            break
        if takes and rt._news:
            continue  # rung again while the news was read
        rt._stirred = asyncio.get_running_loop().create_future()
        await asyncio.wait((commit, rt._stirred), return_when=asyncio.FIRST_COMPLETED)
        rt._stirred = None
    if commit.done() or rt._later is not None or rt._waiting or rt._stopping:
        return None
    if rt._news and not rt.store.steady():
        return None  # ownership moved: told between this commit and the next
    built = build(rt)
    if built is None:
        return None
    rt._next = built[1]
    if rt._to_load:
        await load(rt)
    return built


def refused(rt: DurableRuntime) -> _Pending:
    """The batches a fenced commit refused: the one committing and the one
    built beside it (never sent), in build order."""
    merged = _Pending()
    for pending in (rt._pending, rt._next):
        if pending is not None:
            merged.requests.extend(pending.requests)
            merged.turns.extend(pending.turns)
            merged.results.extend(pending.results)
            merged.failures.extend(pending.failures)
            merged.timers.extend(pending.timers)
            merged.acks.extend(pending.acks)
            merged.flushed.extend(pending.flushed)
    rt._pending = rt._next = None
    rt._later = None
    return merged
