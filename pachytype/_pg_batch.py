"""One activation batch on PostgreSQL, as pure code: claimed mail rows and
loaded states in, the rows to write out. No I/O here (see `_pg_node`).

Design note
-----------
* Mail is handled per entity, in mailbox `seq` order, so messages from one
  sender to one receiver are activated in the order they were committed.
* Each message either activates (new state, outgoing envelopes checked and
  encoded), or becomes a dead letter (state unchanged), exactly as in the
  in-memory runtime: an invalid envelope returned by `activate` fails the
  whole activation.
* A stored message that does not decode (a corrupt row, a message of an
  unknown class, mail for an unknown entity type or an id that does not
  decode) becomes a dead letter carrying its raw bytes and the error, and
  is consumed in the same transaction; the entity carries on with its next
  message (the rule of `pachytype._versioning`, as on LocalDisk).
* State that cannot be loaded (`StateVersionError`, a `DecodeError` on the
  state) *holds* the entity: its rows stay in the mailbox, untouched and in
  order, and the error is reported. Nothing stored is ever overwritten by
  a failed decode.
* Outside messages are deduplicated by id (`dedupe` table): a claimed row
  says whether its id was consumed before (`done`), and such rows are
  dropped. The answer of a call (the state after it, encoded, or the
  error) is written with its dedupe id and notified to its caller.
* Each state row carries its entity's `RECENT` last messages (encoded, at
  most `RECENT_BYTES`), so a dead letter has them after a restart or a
  takeover too; an entity loaded from the table starts from them. The
  price: every state write carries them (about 10-15% of the durable
  drain's throughput with tiny messages, see `make bench`).
* For a followed entity (`watched`), every committed state of the batch is
  kept for the `history` table, in order (followers read them there); for
  the others only the last state is encoded.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, NamedTuple

import attrs
from attrs import define, field

from pachytype._address import Address, Envelope, Ref, make_ref
from pachytype._budget import DEFAULT_BUDGET
from pachytype._codec import Codec
from pachytype._core.deadletters import dead_row, raw_dead_row
from pachytype._core.envelopes import check_returned
from pachytype._core.timers import CANCEL, supersede
from pachytype._core.turn import RECENT, UNBORN, Failure, Unreadable, run_turn
from pachytype._errors import (
    DecodeError,
    PachytypeError,
    StateVersionError,
    UnknownEntityError,
)
from pachytype._inbox import state_kept
from pachytype._pg_partition import partition_of
from pachytype._registry import Registry
from pachytype._store import DeadRow

Key = tuple[str, str]
"""`(entity type, id text)`."""

Gate = Callable[[str, type, int], None]
"""Raises if a message of a class must not be sent to an entity type's partition."""


class Mail(NamedTuple):
    """One claimed mailbox row (`ctid`: its physical address, stable while
    our transaction holds its row lock; deletes need no index lookup). A
    named tuple: a batch makes thousands, straight from the claimed rows."""

    ctid: tuple[int, int]
    msg_id: uuid.UUID
    partition: int
    entity_type: str
    id_text: str
    payload: bytes
    outside: bool
    reply: bool
    reply_to: str | None = None  # the caller's reply channel (None: a schema-v1 caller)
    reply_key: bytes | None = None
    done: bool = False  # an outside message whose id was consumed before
    watched: bool = False  # someone follows this entity


@define
class Cached:
    """An entity's committed state as this owner knows it, with its most
    recent messages as stored (encoded, oldest first)."""

    state: Any
    activations: int
    recent: tuple[bytes, ...] = ()


@define
class Reply:
    """The outcome of a `call`'s message: the state after it, or the error."""

    msg_id: uuid.UUID
    entity_type: str
    id: Hashable
    message: object
    reply_to: str | None
    reply_key: bytes | None
    state: Any = None
    version: int | None = None
    data: bytes | None = None  # the state, encoded
    error: BaseException | None = None


@define
class Outcome:
    """Everything one batch writes, and what to do after it commits."""

    consumed: list[tuple[int, int]] = field(factory=list)  # mailbox ctids to delete
    dedupe: list[uuid.UUID] = field(factory=list)  # outside message ids consumed
    # states: (type, id text, partition, version, data, activations, recent messages)
    states: list[tuple[str, str, int, int, bytes, int, bytes]] = field(factory=list)
    # mail: (msg id, partition, type, id text, payload, delay seconds, timer key)
    mail: list[tuple[uuid.UUID, int, str, str, bytes, float, str | None]] = field(factory=list)
    # keyed timers whose pending rows to delete (replaced or cancelled): (type, id text, key)
    timers: list[tuple[str, str, str]] = field(factory=list)
    # dead: (type, id text, message, error type, error, traceback, version, state, recent)
    dead: list[tuple[str, str, bytes, str, str, str, int | None, bytes | None, list[bytes]]] = (
        field(factory=list)
    )
    replies: list[Reply] = field(factory=list)
    cache: dict[Key, Cached] = field(factory=dict)  # new cache entries after commit
    blocked: dict[Key, PachytypeError] = field(factory=dict)  # held: state does not load
    undecodable: list[PachytypeError] = field(factory=list)  # mail dead-lettered as bytes
    # per activation of a followed entity: (type, id text, activations, version, data)
    committed: list[tuple[str, str, int, int, bytes]] = field(factory=list)
    followed: list[Key] = field(factory=list)  # followed entities with new states
    activations: int = 0  # committed activations


def new_message_id() -> uuid.UUID:
    """A message id that sorts by creation time (UUIDv7 layout: 48-bit Unix ms,
    then random bits), so the dedupe index grows at its right edge."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


class Recent:
    """The most recent messages (decoded) of recently active entities
    (bounded); their encoded form is stored with the state (`Cached.recent`)."""

    def __init__(self, entities: int = 10_000) -> None:
        self._by_key: OrderedDict[Key, deque[object]] = OrderedDict()
        self._limit = entities

    def __contains__(self, key: Key) -> bool:
        return key in self._by_key

    def of(self, key: Key, stored: Iterable[object] | None = None) -> deque[object]:
        """The entity's deque; `stored`, if given, replaces what it held (the
        entity was loaded from the table: another node may have run it)."""
        found = self._by_key.pop(key, None)
        if found is None or stored is not None:
            found = deque(stored or (), maxlen=RECENT)
        self._by_key[key] = found
        if len(self._by_key) > self._limit:
            self._by_key.popitem(last=False)
        return found


RECENT_BYTES: Final = 64 * 1024
"""Most bytes of recent messages stored with a state (it is rewritten at
every commit of the entity): the newest messages that fit, at least one."""


def _bounded(payloads: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The last `RECENT` payloads, newest first kept, within `RECENT_BYTES`."""
    kept = payloads[-RECENT:]
    size = sum(len(p) for p in kept)
    while len(kept) > 1 and size > RECENT_BYTES:
        size -= len(kept[0])
        kept = kept[1:]
    return kept


def pack_recent(payloads: Iterable[bytes]) -> bytes:
    """Encoded messages as one value (each prefixed by its 4-byte length)."""
    parts: list[bytes] = []
    for p in payloads:
        parts.append(len(p).to_bytes(4, "big"))
        parts.append(p)
    return b"".join(parts)


def unpack_recent(data: bytes | None) -> tuple[bytes, ...]:
    """The inverse of `pack_recent` (None: nothing stored)."""
    out: list[bytes] = []
    at = 0
    while data is not None and at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(bytes(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return tuple(out)


def run_batch(
    registry: Registry,
    codec: Codec,
    partitions: int,
    mail: Sequence[Mail],
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int, bytes | None]],
    recent: Recent,
    budget: float = DEFAULT_BUDGET,
    gate: Gate | None = None,
) -> Outcome:
    """Activate every entity of `mail` (each activation within `budget` seconds).

    `gate(entity type, message class, partition)` raises if a message an
    activation returns must not be sent (`_pg_deploy`: a live node of another
    version that may own the target could not decode it); the activation fails.

    `states` holds what the owner has cached (None: known never committed);
    `stored` holds `(version, data, activations, recent messages)` read for
    the other keys.
    """
    out = Outcome()
    seen: set[uuid.UUID] = set()
    by_key: dict[Key, list[Mail]] = {}
    for row in mail:
        if row.outside and (row.done or row.msg_id in seen):
            out.consumed.append(row.ctid)  # a resent outside message: applied once already
            continue
        seen.add(row.msg_id)
        by_key.setdefault((row.entity_type, row.id_text), []).append(row)
    for key, rows in by_key.items():
        _run_entity(
            registry, codec, partitions, key, rows, states, stored, recent, out, budget, gate
        )
    return out


def _run_entity(
    registry: Registry,
    codec: Codec,
    partitions: int,
    key: Key,
    rows: list[Mail],
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int, bytes | None]],
    recent: Recent,
    out: Outcome,
    budget: float,
    gate: Gate | None,
) -> None:
    entity_type, id_text = key
    etype = registry.types.get(entity_type)
    try:
        if etype is None:
            raise UnknownEntityError(entity_type, id_text, list(registry.types), registry.package)
        id = codec.decode_id(entity_type, id_text)
    except (DecodeError, UnknownEntityError) as error:
        for row in rows:  # no entity to hold: the mail itself is unreadable
            _undecodable(out, key, id_text, row, error)
        return
    try:
        cached = _load(codec, key, id, states, stored)
    except (DecodeError, StateVersionError) as error:
        out.blocked[key] = error
        return
    messages = [_decode(codec, entity_type, id, row.payload) for row in rows]
    seed = None
    # Read from the table just now (another node may have run it since), or
    # out of the in-memory deques: start from the messages stored with it.
    if cached is not None and (key not in states or key not in recent):
        seed = [_decode(codec, entity_type, id, p) for p in cached.recent]
    history = recent.of(key, seed)
    payloads = _bounded((*(cached.recent if cached else ()), *(row.payload for row in rows)))
    address: Address[Any] = make_ref(Ref, etype.name, id)
    name, version = etype.name, etype.state_version

    def store(state: object) -> bytes:
        data = codec.encode_state(name, state)
        codec.decode_state(name, id, data, version)  # what cannot be read back is not written
        return data

    def route(sender: Address[Any], env: Envelope[Any]) -> _Row:
        return _route(registry, codec, partitions, sender, env, gate)

    turn = run_turn(
        etype,
        address,
        UNBORN if cached is None else cached.state,
        messages,
        history,
        route,
        store_state=store,
        keep_states=True,
        budget=budget,
    )
    failures = {f.index: f for f in turn.failures}
    states_after = turn.states
    assert states_after is not None
    before = 0 if cached is None else cached.activations
    count = before
    watched = any(row.watched for row in rows)
    last_ok = max((i for i in range(len(rows)) if i not in failures), default=-1)
    for i, row in enumerate(rows):
        out.consumed.append(row.ctid)
        if row.outside:
            out.dedupe.append(row.msg_id)
        failure = failures.get(i)
        if failure is not None:
            _dead(out, codec, key, id, row, failure, version)
            continue
        count += 1
        state = states_after[i]
        data: bytes | None = None
        if watched or row.reply:  # only they need every intermediate state encoded
            data = codec.encode_state(name, state) if i != last_ok else _bytes(turn.stored)
        if watched:
            assert data is not None
            out.committed.append((entity_type, id_text, count, version, data))
        if row.reply:
            reply = Reply(row.msg_id, entity_type, id, messages[i], row.reply_to, row.reply_key)
            reply.state, reply.version, reply.data = state, version, data
            out.replies.append(reply)
    for routed in turn.routed:
        if routed[6] is not None:  # a keyed timer, or a cancel (`pachytype._core.timers`)
            supersede(out.mail, routed, _timer_of, _delayed)
            out.timers.append((routed[2], routed[3], routed[6]))
            if routed[4] is None:
                continue
        out.mail.append(routed)
    out.activations += count - before
    partition = rows[0].partition
    if turn.changed and state_kept(entity_type, watched):
        assert type(turn.stored) is bytes
        out.states.append(
            (entity_type, id_text, partition, version, turn.stored, count, pack_recent(payloads))
        )
        out.cache[key] = Cached(turn.state, count, payloads)
        if watched:
            out.followed.append(key)
    elif cached is not None and not turn.changed:
        # Only failures: the state stays, but its recent messages are stored.
        base = cached.state
        with contextlib.suppress(Exception):  # (a state that no longer encodes stays as it is)
            kept = codec.encode_state(name, base, id)
            out.states.append(
                (entity_type, id_text, partition, version, kept, count, pack_recent(payloads))
            )
        out.cache[key] = Cached(base, count, payloads)


def _bytes(value: object) -> bytes:
    assert type(value) is bytes
    return value


def _decode(codec: Codec, entity_type: str, id: Hashable, payload: bytes) -> object:
    try:
        return codec.decode_message(entity_type, payload, id)
    except DecodeError as error:
        return Unreadable(payload, error)


def _load(
    codec: Codec,
    key: Key,
    id: Hashable,
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int, bytes | None]],
) -> Cached | None:
    if key in states:
        return states[key]
    found = stored.get(key)
    if found is None:
        return None
    version, data, activations, recent = found
    return Cached(codec.decode_state(key[0], id, data, version), activations, unpack_recent(recent))


def _dead(
    out: Outcome,
    codec: Codec,
    key: Key,
    id: Hashable,
    row: Mail,
    failure: Failure,
    version: int,
) -> None:
    dead = dead_row(key[0], key[1], failure, version, codec.encode_message, codec.encode_state)
    dead = attrs.evolve(dead, message=row.payload)  # exactly the bytes the row held
    _append_dead(out, dead, version if dead.state is not None else None)
    if type(failure.message) is Unreadable:
        out.undecodable.append(failure.error)  # type: ignore[arg-type]  # a DecodeError
    if row.reply:
        out.replies.append(
            Reply(
                row.msg_id,
                key[0],
                id,
                failure.message,
                row.reply_to,
                row.reply_key,
                error=failure.error,
            )
        )


def _append_dead(out: Outcome, dead: DeadRow, version: int | None) -> None:
    out.dead.append(
        (
            dead.entity_type,
            dead.id_text,
            dead.message,
            dead.error_type,
            dead.error,
            dead.traceback,
            version,
            dead.state,
            list(dead.recent),
        )
    )


def _undecodable(out: Outcome, key: Key, id: Hashable, row: Mail, error: PachytypeError) -> None:
    """Dead-letter a stored message that cannot be decoded, as its raw bytes
    (nothing lost; `recent` is just this message, as on LocalDisk)."""
    out.consumed.append(row.ctid)
    if row.outside:
        out.dedupe.append(row.msg_id)
    _append_dead(out, raw_dead_row(key[0], key[1], row.payload, error, None, 0, []), None)
    out.undecodable.append(error)
    if row.reply:
        out.replies.append(
            Reply(row.msg_id, key[0], id, row.payload, row.reply_to, row.reply_key, error=error)
        )


_Row = tuple[uuid.UUID, int, str, str, Any, float, str | None]
"""A routed envelope: (msg id, partition, type, id text, payload or None for a
cancel, delay, timer key)."""


def _timer_of(row: _Row) -> tuple[tuple[str, str], str | None]:
    return (row[2], row[3]), row[6]


def _delayed(row: _Row) -> bool:
    return row[5] > 0


def _route(
    registry: Registry,
    codec: Codec,
    partitions: int,
    sender: Address[Any],
    env: Envelope[Any],
    gate: Gate | None = None,
) -> _Row:
    to, etype, message, delay, key = check_returned(registry, sender, env)
    id_text = codec.encode_id(etype.name, to._id)
    partition = partition_of(etype.name, id_text, partitions)
    if gate is not None:
        gate(etype.name, type(message), partition)
    return (
        new_message_id(),
        partition,
        etype.name,
        id_text,
        None if message is CANCEL else codec.encode_message(etype.name, message),
        delay,
        key,
    )
