"""One entity's turn into a batch (`turn_durably`): `run_turn` over a slice
of its inbox, then what the batch must store for it: its state row and
consumed mail, dead letters of failed messages (`fail`), events and
snapshots of event-sourced entities (`journal`), answers to callers in
other processes and states their followers read (`answer`), and the mail it
sent (numbered by `mail.number`). Results for callers wait in `_Pending`."""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from pachytype._codec import storable_text
from pachytype._core.deadletters import dead_row
from pachytype._core.turn import RECENT, UNBORN, Failure, StoreState, Turn, run_turn
from pachytype._errors import ActivationError
from pachytype._inbox import state_kept
from pachytype._registry import EntityType
from pachytype._runtime.durable.mail import number
from pachytype._runtime.durable.records import (
    Future,
    Mail,
    _Live,
    _Pending,
)
from pachytype._store import (
    AnswerRow,
    CommitBatch,
)

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


def turn_durably(
    rt: DurableRuntime,
    live: _Live,
    state: object,
    batch: CommitBatch,
    pending: _Pending,
    limit: int,
) -> int:
    """Run up to `limit` messages of one entity (`run_turn`) into `batch`; returns how many."""
    # This runs once per turn (tens of thousands a second): the slice is split
    # by one zip, and the common case (no caller, no follower, nothing failed,
    # nothing sent) skips the loops below.
    etype = live.etype
    inbox = live.inbox
    n = min(len(inbox), limit)
    # popleft, not a copy and clear(): an inbox emptied by popleft keeps its
    # block, one cleared frees it and the next mail allocates another (measured
    # slower, with a longer tail of call latency).
    items = [inbox.popleft() for _ in range(n)]
    ids, messages, futures, payloads = zip(*items, strict=True)
    recent = live.recent
    # A refused batch takes its messages out of `recent` again (`apply.unnote`):
    # those they push out of the bounded deque must come back then.
    if len(recent) + n > RECENT:
        live.pushed = (tuple(recent), tuple(live.stored))
    else:
        live.pushed = None
    followers = rt._followers
    followed = bool(followers) and live.key in followers
    answers = rt._answer_ids
    answered = bool(answers) and not answers.isdisjoint(ids)
    remote = bool(rt._remote) and (etype.name, live.id_text) in rt._remote
    calls = answered or remote or futures.count(None) != n
    journaled = etype.event_sourced
    turn = run_turn(
        etype,
        live.address,
        state,
        messages,
        recent,
        rt._route_durably,
        store_state=state_encoder(rt, etype, live.address._id),
        keep_states=calls or followed,
        budget=rt.activation_budget,
        store_event=event_encoder(rt, etype, live.address._id) if journaled else None,
        events_before=rt._seqs.get(live.key, 0) if journaled else 0,
        keep_events=journaled,
    )
    # The core noted every message it ran, in order: their stored forms follow.
    live.stored.extend(payloads)
    if journaled:
        journal(rt, live, turn.events, turn.seq, turn.snapshot, batch)
    failed: set[int] | frozenset[int] = _NONE
    if turn.failures:
        failed = {failure.index for failure in turn.failures}
        for failure in turn.failures:
            fail(rt, live, pending, batch, failure, futures[failure.index])
    shown: list[object] | None = [] if followed else None
    states = turn.states
    if states is not None:
        for i, fut in enumerate(futures):
            if i in failed:
                continue
            if fut is not None:
                pending.results.append((fut, states[i]))
            if shown is not None:
                shown.append(states[i])
    if answered or remote:
        answer(rt, live, items, failed, turn, batch, remote)
    if turn.routed:
        for out in turn.routed:
            number(rt, out, batch, pending)
    last = ids[-1]
    data = turn.stored if turn.changed and not journaled else None
    assert data is None or type(data) is bytes
    if followed or remote or state_kept(etype.name, False):
        live.recent_dirty = True
        batch.entities.append((etype.name, live.id_text, data, etype.state_version, last, None))
    else:  # an inbox nobody follows: its ask is over, nothing is stored (`pachytype._inbox`)
        turn.changed = False
        if rt._owned is not None:
            # (unless it became followed in another process: the store checks
            # every entity of the batch against its followers)
            batch.entities.append((etype.name, live.id_text, None, 0, last, None))
    batch.consumed.extend(ids)
    pending.turns.append((live, turn.state if turn.changed else UNBORN, shown, n))
    rt._backlog -= n
    rt.activations += n
    return n


_NONE: frozenset[int] = frozenset()


def answer(
    rt: DurableRuntime,
    live: _Live,
    items: list[Mail],
    failed: AbstractSet[int],
    turn: Turn,
    batch: CommitBatch,
    remote: bool,
) -> None:
    """Answers to callers in other processes, and the states their followers
    read (`remote`), into the batch that commits them."""
    etype, answers = live.etype, rt._answer_ids
    name, version, states = etype.name, etype.state_version, turn.states
    errors = {f.index: f.error for f in turn.failures}
    last_ok = max((i for i in range(len(items)) if i not in failed), default=-1)
    for i, item in enumerate(items):
        asked = item[0] in answers
        if not (asked or remote):
            continue
        if i in failed:
            if asked:
                answers.discard(item[0])
                batch.answers.append(error_answer(item[0], version, errors[i]))
            continue
        assert states is not None
        if i == last_ok and turn.changed and not etype.event_sourced:
            assert type(turn.stored) is bytes
            data: bytes = turn.stored
        else:
            data = rt.codec.encode_state(name, states[i])
        if asked:
            answers.discard(item[0])
            batch.answers.append((item[0], data, version, None, None, None))
        if remote:
            batch.history.append((name, live.id_text, data, version))


def journal(
    rt: DurableRuntime,
    live: _Live,
    events: list[tuple[int, int, object, object]],
    seq: int,
    snapshot: object,
    batch: CommitBatch,
) -> None:
    """Put an event-sourced turn's events (and snapshot) in the batch."""
    name, id_text = live.etype.name, live.id_text
    batch.events.extend([(name, id_text, n, data) for _, n, _, data in events])  # type: ignore[misc]
    if type(snapshot) is bytes:
        batch.snapshots.append((name, id_text, seq, snapshot, live.etype.state_version))
    # Set now: the entity is busy until this batch commits (a failed commit
    # stops the store), so no turn reads it before then.
    rt._seqs[live.key] = seq


def fail(
    rt: DurableRuntime,
    live: _Live,
    pending: _Pending,
    batch: CommitBatch,
    failure: Failure,
    fut: Future | None,
) -> None:
    """A failed message: its dead letter in the batch, its caller's error pending."""
    etype = live.etype
    codec = rt.codec
    batch.dead.append(
        dead_row(
            etype.name,
            live.id_text,
            failure,
            etype.state_version,
            codec.encode_message,
            codec.encode_state,
        )
    )
    if fut is not None:
        error = ActivationError(etype.name, live.address._id, failure.message, failure.error)
        error.__cause__ = failure.error
        pending.failures.append((fut, error))


def event_encoder(rt: DurableRuntime, etype: EntityType, id: Hashable) -> StoreState:
    """How a turn encodes its events (checked to decode back)."""
    codec = rt.codec
    name = etype.name

    def store(event: object) -> bytes:
        data = codec.encode_event(name, event, id)
        # What cannot be read back must not be written: replay would hold the entity.
        codec.decode_event(name, id, data)
        return data

    return store


def state_encoder(rt: DurableRuntime, etype: EntityType, id: Hashable) -> StoreState:
    """How a turn encodes its new state (checked to decode back)."""
    # Encoded and decoded back: what cannot be read back must not be
    # written (it would hold the entity at its next load).
    encode = rt.codec.encode_state_checked
    name = etype.name

    def store(state: object) -> bytes:
        return encode(name, state, id)

    return store


def error_answer(mail_id: int, version: int, error: BaseException) -> AnswerRow:
    """A failed message's answer: the error's type and text as any store keeps them."""
    return (
        mail_id,
        None,
        version,
        storable_text(type(error).__qualname__),
        storable_text(str(error)),
        error,
    )
