"""Requests from outside: `send`, `call`, `redeliver`, `discard` and
`forget_state` are checked and encoded here (they raise before anything is
sent), then queued for the dispatcher as `_Request`s (calls in their own,
first-served queue) and acknowledged after the commit that takes them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pachytype._address import Address, Envelope, _Envelope, not_an_envelope
from pachytype._deadletter import DeadLetter
from pachytype._errors import PachytypeError
from pachytype._runtime.durable.records import (
    _ENCODE_SLICE,
    Future,
    Out,
    _Request,
)

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def checked_outs(rt: DurableRuntime, envelopes: Iterable[Envelope[Any]]) -> list[Out]:
    """Check and encode envelopes from outside (raises before anything is sent)."""
    types = rt.registry.types
    encode = rt.codec.encode_message
    id_text = rt._id_text
    outs = []
    for env in envelopes:
        if type(env) is not _Envelope:
            raise not_an_envelope(env)
        to = env._to
        etype = types.get(to._entity_type)
        message = env._message
        if etype is None or type(message) not in etype.message_set:
            rt.resolve(env)  # raises, with the reason
            raise AssertionError("unreachable")
        name = etype.name
        outs.append(
            Out(
                to,
                etype,
                id_text(etype, to),
                message,
                encode(name, message),
                env._delay,
                None,
                env._tkey,
            )
        )
    return outs


def submit(rt: DurableRuntime, request: _Request) -> None:
    """Queue a request for the dispatcher."""
    # Calls jump the queue of sends: the next batch takes them all.
    (rt._incoming if request.ack is not None else rt._calls).append(request)
    rt._wake_up()


async def send_durably(rt: DurableRuntime, envelopes: Iterable[Envelope[Any]]) -> None:
    """Send envelopes; return once they are committed."""
    rt._check_open()
    envs = envelopes if isinstance(envelopes, list | tuple) else list(envelopes)
    if len(envs) <= _ENCODE_SLICE:
        outs = checked_outs(rt, envs)
    else:
        # Encode a big send in slices, letting calls and the dispatcher run.
        outs = []
        for at in range(0, len(envs), _ENCODE_SLICE):
            outs.extend(checked_outs(rt, envs[at : at + _ENCODE_SLICE]))
            await asyncio.sleep(0)
        rt._check_open()
    if not outs:
        return
    while rt._backlog > rt.max_backlog:
        rt._drained.clear()
        await rt._drained.wait()
        rt._check_open()
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    submit(rt, _Request(outs, ack))
    await ack


def call(rt: DurableRuntime, envelope: Envelope[Any]) -> Future:
    """Commit one envelope; the future gets the target's state after it."""
    rt._check_open()
    (out,) = checked_outs(rt, (envelope,))
    out.fut = asyncio.get_running_loop().create_future()
    submit(rt, _Request([out], None))
    return out.fut


async def redeliver(rt: DurableRuntime, dead: DeadLetter) -> None:
    """Re-enqueue a dead letter's message; it leaves the dead letters in the
    same commit."""
    rt._check_open()
    if isinstance(dead.message, bytes):
        raise PachytypeError(
            f"dead letter #{dead.seq} for {dead.to!r} holds a message that cannot be "
            f"decoded ({dead.error_type}: {dead.error}); fix the message classes so it "
            f"decodes, then redeliver it"
        )
    await check_dead(rt, dead, "redeliver")
    (out,) = checked_outs(rt, (_Envelope(dead.to, dead.message, 0.0),))
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    submit(rt, _Request([out], ack, redeliver=dead.seq))
    await ack


async def discard(rt: DurableRuntime, dead: DeadLetter) -> None:
    """Delete a dead letter without delivering its message."""
    rt._check_open()
    await check_dead(rt, dead, "discard")
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    submit(rt, _Request([], ack, redeliver=dead.seq))
    await ack


async def forget_state(rt: DurableRuntime, ref: Address[Any]) -> None:
    """Delete an entity's stored state (an ask's inbox, once its ask is
    over: `pachytype._inbox`); return once that is committed."""
    rt._check_open()
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    submit(rt, _Request([], ack, forget=ref))
    await ack


async def check_dead(rt: DurableRuntime, dead: DeadLetter, what: str) -> None:
    """Raise unless the dead letter is still stored."""
    if not any(row.id == dead.seq for row in await rt.store.dead_letters()):
        raise PachytypeError(
            f"cannot {what} dead letter #{dead.seq} for {dead.to!r}: it is not among "
            f"the {rt.name} dead letters (already redelivered or discarded); list "
            f"them again with `await eco.dead_letters()`"
        )
