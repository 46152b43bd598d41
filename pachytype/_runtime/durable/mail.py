"""New mail's way in: numbering a message (`number`: an id, then an inbox
or a timer row; keyed timers replace or cancel their predecessor), putting
it in its target's inbox and scheduling the target (`put`, the calls-first
`_urgent` queue or `_dready`), arming timers on the clock (`arm`) and
dropping replaced or cancelled ones (`drop_timer`). Every part that makes
mail (outside requests, turns, fired timers, recovery) goes through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pachytype._core.timers import CANCEL, timer_dropped
from pachytype._errors import PachytypeError
from pachytype._runtime.durable.records import (
    Out,
    _Live,
    _Pending,
    _Timer,
)
from pachytype._store import CommitBatch

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def put(rt: DurableRuntime, out: Out, mail_id: int) -> None:
    """Put a numbered message in its target's inbox and schedule the target."""
    key = out.address._key
    live = rt._dlive.get(key)
    if live is None:
        live = rt._dlive[key] = _Live(out.address, out.etype, out.id_text)
    fut = out.fut
    live.inbox.append((mail_id, out.message, fut, out.payload))
    rt._backlog += 1
    if fut is not None and not live.urgent and not live.busy:
        live.urgent = live.scheduled = True
        rt._urgent.append(live)
        rt._wake_up()
    elif not live.scheduled:
        live.scheduled = True
        rt._dready.append(live)
        rt._wake_up()


def arm(rt: DurableRuntime, timer: _Timer) -> None:
    """Arm a timer on the clock: when it fires, it joins the next batch."""
    if timer.dropped:
        return  # replaced or cancelled while its batch was committing
    rt._armed[timer.id] = timer

    def fire() -> None:
        if rt._armed.pop(timer.id, None) is not None:
            if timer.out.tkey is not None:
                rt._dkeyed.fired(timer.out.address._key, timer.out.tkey, timer)
            rt._fired.append(timer)
            rt._wake_up()

    timer.handle = rt.clock.call_at(timer.due, fire)


def number(
    rt: DurableRuntime, out: Out, batch: CommitBatch, pending: _Pending, *, due_now: bool = False
) -> None:
    """Give `out` an id and put it in the batch: in an inbox now, or as a
    timer; a keyed one replaces (or, message `CANCEL`, cancels) the
    pending timer of its key first (`pachytype._core.timers`)."""
    key = out.tkey
    timer: _Timer | None = None
    if key is not None and not due_now:
        target = out.address._key
        if out.message is CANCEL:
            drop_timer(rt, rt._dkeyed.cancel(target, key), batch, cancelled=True)
            if rt._owned is not None and not owns(rt, out):
                batch.cancels.append((out.etype.name, out.id_text, key))  # its owner's
            return
        if out.delay > 0:
            timer = _Timer(0, out, rt.clock.now() + out.delay)
        drop_timer(rt, rt._dkeyed.schedule(target, key, timer), batch, cancelled=False)
    new_id = rt._next_id
    rt._next_id = new_id + 1
    owned = rt._owned is None or owns(rt, out)
    if out.delay > 0 and not due_now:
        due = rt.clock.now() + out.delay
        batch.timers.append((new_id, out.etype.name, out.id_text, out.payload, due, key))
        if timer is not None:
            timer.id = new_id
            timer.due = due
        if owned:
            pending.timers.append(_Timer(new_id, out, due) if timer is None else timer)
    elif owned:
        batch.mail.append((new_id, out.etype.name, out.id_text, out.payload))
        put(rt, out, new_id)
    else:
        # Another owner's entity: stored only; the store tells its owner.
        batch.mail.append((new_id, out.etype.name, out.id_text, out.payload))
        if out.fut is not None and not out.fut.done():
            out.fut.set_exception(elsewhere(rt, out))


def owns(rt: DurableRuntime, out: Out) -> bool:
    """Whether `out`'s entity is in a scope this runtime owns."""
    assert rt._owned is not None
    return rt.store.scope_of(out.etype.name, out.id_text) in rt._owned


def elsewhere(rt: DurableRuntime, out: Out) -> PachytypeError:
    """The error of a call to an entity another process owns."""
    return PachytypeError(
        f"entity {out.etype.name!r} {out.address._id!r} is owned by another process "
        f"of this {rt.name} store: its message is stored and delivered there, but "
        f"this runtime cannot answer for it; call it through the ecosystem"
    )


def drop_timer(
    rt: DurableRuntime, timer: _Timer | None, batch: CommitBatch, *, cancelled: bool
) -> None:
    """A keyed timer replaced or cancelled before it fell due: never delivered."""
    if timer is None:
        return
    timer.dropped = True
    if timer.handle is not None:
        timer.handle.cancel()
    rt._armed.pop(timer.id, None)
    batch.cancelled.append(timer.id)  # deleted after this batch's new timers are stored
    fut = timer.out.fut
    if fut is not None and not fut.done():
        fut.set_exception(timer_dropped(timer.out.address, timer.out.tkey or "", cancelled))
