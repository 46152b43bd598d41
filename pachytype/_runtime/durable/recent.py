"""A dead letter's recent messages on a durable runtime: when the ones an
entity ran are written, and how a batch that did not commit takes its own
back out.

Design note. Each entity in memory keeps its last `RECENT` messages
(`_Live.recent`, filled by the core's turn; `_Live.stored`, the same as
stored). A turn does not write them: written with every commit
(`recent_every=0`), ten messages in every changed state row cost LocalDisk
about a fifth of its throughput (`localdisk.durable`'s workload: 1.79 s of
CPU against 1.48 s, 120k activations/s against 157k). They are written
as a row that carries only them (`recent_row`):

* with the first commit built once `recent_every` seconds have passed since
  the last such write (`flush`), for every entity whose recent messages
  changed meanwhile; an entity whose turn is in the commit under way waits
  for the next write (that commit may still be refused). A timer wakes the
  dispatcher when the time comes, so an idle runtime writes them too;
* when an idle entity leaves memory, at a clean close, and when its scope
  is handed over (`apply.drop_idle`, `DurableRuntime.stop`, `apply.drop`).

So after a kill, or a partition taken from a node whose lease expired, a
dead letter misses at most the messages its entity ran in the last
`recent_every` seconds before it. `recent_every=0` writes them with every
commit (none is ever missed, at that cost).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from pachytype._runtime.durable.records import _Live, _Pending
from pachytype._store import CommitBatch, EntityRow

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime

RECENT_EVERY: Final = 1.0
"""Default seconds at most between an entity running a message and the write
of its recent messages (what a kill can take from a dead letter's context)."""


def check_recent_every(seconds: float, owner: str) -> float:
    """Validate an ecosystem's `recent_every` (seconds, >= 0)."""
    if not seconds >= 0:
        raise ValueError(
            f"recent_every={seconds!r} for {owner}: give the most seconds a dead letter's "
            f"recent messages may wait to be written, 0 or more (0: with every commit; "
            f"default {RECENT_EVERY:g})"
        )
    return seconds


def flush(rt: DurableRuntime, batch: CommitBatch, pending: _Pending) -> None:
    """Once `recent_every` has passed: add to `batch` the recent messages of
    every entity in memory that changed since they were last written, but
    not of those whose turn is in the commit under way."""
    now = time.monotonic()
    if now < rt._recent_due:
        return
    rt._recent_due = now + rt.recent_every
    mine = {id(turn[0]) for turn in pending.turns} if pending.turns else ()
    for live in rt._dlive.values():
        if live.recent_dirty and (not live.busy or id(live) in mine):
            batch.entities.append(recent_row(live))
            pending.flushed.append(live)


def wake_when_due(rt: DurableRuntime) -> None:
    """After a commit that ran messages: wake the dispatcher when their
    recent messages are due (an idle runtime builds no commit otherwise)."""
    if rt._recent_timer is not None or rt.recent_every <= 0 or rt._stopping:
        return

    def due() -> None:
        rt._recent_timer = None
        rt._wake_up()

    delay = max(0.0, rt._recent_due - time.monotonic())
    rt._recent_timer = asyncio.get_running_loop().call_later(delay, due)


def disarm(rt: DurableRuntime) -> None:
    """At a stop: no more wake-ups (the close writes what is left)."""
    if rt._recent_timer is not None:
        rt._recent_timer.cancel()
        rt._recent_timer = None


def recent_row(live: _Live) -> EntityRow:
    """An entity row that changes only the recent messages (nothing else
    moves), as their mail was stored (unreadable mail as its bytes): kept
    beside the decoded ones, not encoded again (a flush writes thousands)."""
    live.recent_dirty = False
    return (live.etype.name, live.id_text, None, 0, 0, tuple(live.stored))


def unnote(pending: _Pending) -> None:
    """Take the messages a batch ran out of its entities' recent messages
    (refused, or cut off at a stop): not written, they run again, here or
    at the next owner. Recent messages that batch was to write are marked
    unwritten again."""
    for live, _, _, n in pending.turns:
        if live.pushed is not None:
            recent, stored = live.pushed
            live.recent.clear()
            live.recent.extend(recent)
            live.stored.clear()
            live.stored.extend(stored)
            continue
        for _ in range(min(n, len(live.recent))):
            live.recent.pop()
            live.stored.pop()
    for live in pending.flushed:
        live.recent_dirty = True
