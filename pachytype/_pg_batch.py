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
* Outside messages are deduplicated by id (`dedupe` table): the batch is
  given the ids already consumed and drops those rows.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Final

from attrs import define, field

from pachytype._address import Envelope, _Envelope
from pachytype._codec import Codec
from pachytype._errors import (
    DecodeError,
    PachytypeError,
    StateVersionError,
    UnknownEntityError,
    WrongMessageError,
)
from pachytype._pg_partition import partition_of
from pachytype._registry import Registry

Key = tuple[str, str]
"""`(entity type, id text)`."""

RECENT: Final = 10
"""Messages a dead letter keeps as context."""


@define
class Mail:
    """One claimed mailbox row (`ctid`: its physical address, stable while
    our transaction holds its row lock; deletes need no index lookup)."""

    ctid: tuple[int, int]
    msg_id: uuid.UUID
    partition: int
    entity_type: str
    id_text: str
    payload: bytes
    outside: bool
    reply: bool


@define
class Cached:
    """An entity's committed state as this owner knows it."""

    state: Any
    activations: int


@define
class Reply:
    """The outcome of a `call`'s message: the state after it, or the error."""

    msg_id: uuid.UUID
    entity_type: str
    id: Hashable
    message: object
    state: Any = None
    error: BaseException | None = None


@define
class Outcome:
    """Everything one batch writes, and what to do after it commits."""

    consumed: list[tuple[int, int]] = field(factory=list)  # mailbox ctids to delete
    dedupe: list[uuid.UUID] = field(factory=list)  # outside message ids consumed
    # states: (type, id text, partition, version, data, activations)
    states: list[tuple[str, str, int, int, bytes, int]] = field(factory=list)
    # mail: (msg id, partition, type, id text, payload, delay seconds)
    mail: list[tuple[uuid.UUID, int, str, str, bytes, float]] = field(factory=list)
    # dead: (type, id text, message, error type, error, traceback, version, state, recent)
    dead: list[tuple[str, str, bytes, str, str, str, int | None, bytes | None, list[bytes]]] = (
        field(factory=list)
    )
    replies: list[Reply] = field(factory=list)
    cache: dict[Key, Cached] = field(factory=dict)  # new cache entries after commit
    blocked: dict[Key, PachytypeError] = field(factory=dict)  # held: state does not load
    undecodable: list[PachytypeError] = field(factory=list)  # mail dead-lettered as bytes
    # per activation, for followers: (type, id text, activations, version, data)
    committed: list[tuple[str, str, int, int, bytes]] = field(factory=list)


def new_message_id() -> uuid.UUID:
    """A message id that sorts by creation time (UUIDv7 layout: 48-bit Unix ms,
    then random bits), so the dedupe index grows at its right edge."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


class Recent:
    """The most recent messages (encoded) of recently active entities (bounded)."""

    def __init__(self, entities: int = 10_000) -> None:
        self._by_key: OrderedDict[Key, deque[bytes]] = OrderedDict()
        self._limit = entities

    def of(self, key: Key) -> deque[bytes]:
        found = self._by_key.pop(key, None)
        if found is None:
            found = deque(maxlen=RECENT)
        self._by_key[key] = found
        if len(self._by_key) > self._limit:
            self._by_key.popitem(last=False)
        return found


def run_batch(
    registry: Registry,
    codec: Codec,
    partitions: int,
    mail: Sequence[Mail],
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int]],
    already: set[uuid.UUID],
    recent: Recent,
) -> Outcome:
    """Activate every entity of `mail`.

    `states` holds what the owner has cached (None: known never committed);
    `stored` holds `(version, data, activations)` read for the other keys;
    `already` the outside message ids consumed before.
    """
    out = Outcome()
    seen: set[uuid.UUID] = set()
    by_key: dict[Key, list[Mail]] = {}
    for row in mail:
        if row.outside and (row.msg_id in already or row.msg_id in seen):
            out.consumed.append(row.ctid)  # a resent outside message: applied once already
            continue
        seen.add(row.msg_id)
        by_key.setdefault((row.entity_type, row.id_text), []).append(row)
    for key, rows in by_key.items():
        _run_entity(registry, codec, partitions, key, rows, states, stored, recent, out)
    return out


def _run_entity(
    registry: Registry,
    codec: Codec,
    partitions: int,
    key: Key,
    rows: list[Mail],
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int]],
    recent: Recent,
    out: Outcome,
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
    activate = etype.instance.activate
    history = recent.of(key)
    partition = rows[0].partition
    if cached is None:
        try:
            cached = Cached(etype.instance.init(id), 0)
        except Exception as error:
            for row in rows:
                try:
                    message = codec.decode_message(entity_type, row.payload, id)
                except DecodeError as bad:
                    _undecodable(out, key, id, row, bad)
                    continue
                history.append(row.payload)
                _dead(out, key, id, row, message, error, None, None, history)
            return
    state, count = cached.state, cached.activations
    changed = False
    for row in rows:
        try:
            message = codec.decode_message(entity_type, row.payload, id)
        except DecodeError as bad:
            _undecodable(out, key, id, row, bad)
            continue
        history.append(row.payload)
        try:
            envelopes, new_state = activate(message, state)
            routed = [_route(registry, codec, partitions, etype.name, id, e) for e in envelopes]
            data = codec.encode_state(entity_type, new_state)
        except Exception as error:
            version = etype.state_version
            old = codec.encode_state(entity_type, state)
            _dead(out, key, id, row, message, error, version, old, history)
            continue
        out.consumed.append(row.ctid)
        if row.outside:
            out.dedupe.append(row.msg_id)
        out.mail.extend(routed)
        state, count, changed = new_state, count + 1, True
        out.committed.append((entity_type, id_text, count, etype.state_version, data))
        if row.reply:
            out.replies.append(Reply(row.msg_id, entity_type, id, message, state=state))
    if changed:
        _, _, _, version, data = out.committed[-1]
        out.states.append((entity_type, id_text, partition, version, data, count))
    out.cache[key] = Cached(state, count)


def _load(
    codec: Codec,
    key: Key,
    id: Hashable,
    states: dict[Key, Cached | None],
    stored: dict[Key, tuple[int, bytes, int]],
) -> Cached | None:
    if key in states:
        return states[key]
    found = stored.get(key)
    if found is None:
        return None
    version, data, activations = found
    return Cached(codec.decode_state(key[0], id, data, version), activations)


def _dead(
    out: Outcome,
    key: Key,
    id: Hashable,
    row: Mail,
    message: object,
    error: Exception,
    version: int | None,
    state: bytes | None,
    history: Iterable[bytes],
) -> None:
    out.consumed.append(row.ctid)
    if row.outside:
        out.dedupe.append(row.msg_id)
    out.dead.append(
        (
            key[0],
            key[1],
            row.payload,
            type(error).__qualname__,
            str(error),
            "".join(traceback.format_exception(error)),
            version,
            state,
            list(history),
        )
    )
    if row.reply:
        out.replies.append(Reply(row.msg_id, key[0], id, message, error=error))


def _undecodable(out: Outcome, key: Key, id: Hashable, row: Mail, error: PachytypeError) -> None:
    """Dead-letter a stored message that cannot be decoded, as its raw bytes
    (nothing lost; `recent` is just this message, as on LocalDisk)."""
    _dead(out, key, id, row, row.payload, error, None, None, [row.payload])
    out.undecodable.append(error)


def _route(
    registry: Registry,
    codec: Codec,
    partitions: int,
    sender_type: str,
    sender_id: Hashable,
    env: Envelope[Any],
) -> tuple[uuid.UUID, int, str, str, bytes, float]:
    if type(env) is not _Envelope:
        raise TypeError(
            f"entity {sender_type!r} (id {sender_id!r}) returned {env!r} among its "
            f"envelopes; return envelopes built by refs (refs.x(id).message(...))"
        )
    to = env._to
    etype = registry.get(to._entity_type, to._id)
    if type(env._message) not in etype.message_set:
        raise WrongMessageError(
            etype.name, to._id, env._message, [m.__qualname__ for m in etype.messages]
        )
    id_text = codec.encode_id(etype.name, to._id)
    return (
        new_message_id(),
        partition_of(etype.name, id_text, partitions),
        etype.name,
        id_text,
        codec.encode_message(etype.name, env._message),
        env._delay,
    )
