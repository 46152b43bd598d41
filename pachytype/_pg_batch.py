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
import uuid
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from typing import Any

import attrs
from attrs import define, field

from pachytype._address import Address, Envelope, Ref, make_ref
from pachytype._budget import DEFAULT_BUDGET
from pachytype._codec import Codec
from pachytype._core.deadletters import dead_row, raw_dead_row
from pachytype._core.envelopes import check_returned
from pachytype._core.turn import RECENT, UNBORN, Failure, Unreadable, run_turn
from pachytype._errors import (
    DecodeError,
    PachytypeError,
    StateVersionError,
    UnknownEntityError,
)
from pachytype._pg_partition import partition_of
from pachytype._registry import Registry
from pachytype._store import DeadRow

Key = tuple[str, str]
"""`(entity type, id text)`."""


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
    """The most recent messages of recently active entities (bounded)."""

    def __init__(self, entities: int = 10_000) -> None:
        self._by_key: OrderedDict[Key, deque[object]] = OrderedDict()
        self._limit = entities

    def of(self, key: Key) -> deque[object]:
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
    budget: float = DEFAULT_BUDGET,
) -> Outcome:
    """Activate every entity of `mail` (each activation within `budget` seconds).

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
        _run_entity(registry, codec, partitions, key, rows, states, stored, recent, out, budget)
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
    budget: float,
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
    messages = [_decode(codec, entity_type, id, row) for row in rows]
    address: Address[Any] = make_ref(Ref, etype.name, id)
    name, version = etype.name, etype.state_version

    def store(state: object) -> bytes:
        data = codec.encode_state(name, state)
        codec.decode_state(name, id, data, version)  # what cannot be read back is not written
        return data

    def route(sender: Address[Any], env: Envelope[Any]) -> _Row:
        return _route(registry, codec, partitions, sender, env)

    turn = run_turn(
        etype,
        address,
        UNBORN if cached is None else cached.state,
        messages,
        recent.of(key),
        route,
        store_state=store,
        keep_states=True,
        budget=budget,
    )
    failures = {f.index: f for f in turn.failures}
    states_after = turn.states
    assert states_after is not None
    count = 0 if cached is None else cached.activations
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
        data = turn.stored if i == len(rows) - 1 else codec.encode_state(name, state)
        assert type(data) is bytes
        out.committed.append((entity_type, id_text, count, version, data))
        if row.reply:
            out.replies.append(Reply(row.msg_id, entity_type, id, messages[i], state=state))
    out.mail.extend(turn.routed)
    if turn.changed:
        assert type(turn.stored) is bytes
        partition = rows[0].partition
        out.states.append((entity_type, id_text, partition, version, turn.stored, count))
        out.cache[key] = Cached(turn.state, count)
    elif cached is not None:
        out.cache[key] = cached


def _decode(codec: Codec, entity_type: str, id: Hashable, row: Mail) -> object:
    try:
        return codec.decode_message(entity_type, row.payload, id)
    except DecodeError as error:
        return Unreadable(row.payload, error)


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
        out.replies.append(Reply(row.msg_id, key[0], id, failure.message, error=failure.error))


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
        out.replies.append(Reply(row.msg_id, key[0], id, row.payload, error=error))


_Row = tuple[uuid.UUID, int, str, str, bytes, float]


def _route(
    registry: Registry,
    codec: Codec,
    partitions: int,
    sender: Address[Any],
    env: Envelope[Any],
) -> _Row:
    to, etype, message, delay = check_returned(registry, sender, env)
    id_text = codec.encode_id(etype.name, to._id)
    return (
        new_message_id(),
        partition_of(etype.name, id_text, partitions),
        etype.name,
        id_text,
        codec.encode_message(etype.name, message),
        delay,
    )
