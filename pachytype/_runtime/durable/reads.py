"""Reads that commit nothing: an entity's committed state (`read_state`),
following it (`follow`), event streams of an entity or a type
(`entity_events`, `type_events`), stored dead letters (`stored_dead_letters`,
`decode_dead`) and held entities (`held`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pachytype._address import Address, Ref, make_ref
from pachytype._core.held import Held
from pachytype._core.turn import UNBORN
from pachytype._deadletter import DeadLetter
from pachytype._errors import InitError
from pachytype._events import READ_BATCH, StoredEvent, tail
from pachytype._registry import EntityType, Registry
from pachytype._runtime.dispatch import address_of
from pachytype._runtime.durable.records import Codec
from pachytype._runtime.durable.recovery import rebuild_journal
from pachytype._store import DeadRow

if TYPE_CHECKING:
    from pachytype._runtime.durable.runtime import DurableRuntime


async def read_state(rt: DurableRuntime, ref: Address[Any]) -> Any:
    """The entity's committed state (its `init` state if none is stored)."""
    rt._check_open()
    etype = rt.registry.get(ref.entity_type, ref.id)
    key = ref.key
    if key in rt._cache:
        state = rt._cache[key]
    elif etype.event_sourced:
        id_text = rt._id_text(etype, ref)
        journals = await rt.store.load_journals([(etype.name, id_text)])
        if key in rt._cache:  # committed while we read: newer
            state = rt._cache[key]
        else:
            state, _ = rebuild_journal(rt.codec, etype, ref.id, journals.get((etype.name, id_text)))
    else:
        id_text = rt._id_text(etype, ref)
        found = await rt.store.load_states([(etype.name, id_text)])
        stored = found.get((etype.name, id_text))
        if key in rt._cache:  # committed while we read: newer
            state = rt._cache[key]
        elif stored is None or stored[0] is None:
            state = UNBORN
        else:
            state = rt.codec.decode_state(etype.name, ref.id, stored[0], stored[1])
    if isinstance(state, Held):
        raise state.error
    if state is UNBORN:
        try:
            return etype.instance.init(ref.id)
        except Exception as error:
            raise InitError(etype.name, ref.id, error) from error
    return state


async def follow(rt: DurableRuntime, ref: Address[Any]) -> AsyncIterator[Any]:
    """The current state, then every committed state, until the ecosystem closes."""
    rt._check_open()
    state = await rt.read_state(ref)
    cached = rt._cache.get(ref.key, UNBORN)
    if cached is not UNBORN and not isinstance(cached, Held):
        state = cached  # committed while we read; nothing awaits from here on
    async for item in rt._followed(ref, state):
        yield item


def entity_events(
    rt: DurableRuntime, etype: EntityType, ref: Address[Any], after: int
) -> AsyncIterator[tuple[int, Any]]:
    """`(seq, event)` of one event-sourced entity after `after`, then live."""
    rt._check_open()
    store, codec, name, id = rt.store, rt.codec, etype.name, ref.id
    id_text = rt._id_text(etype, ref)

    async def read(position: int) -> list[tuple[int, object]]:
        rt._check_open()
        rows = await store.read_events(name, id_text, position, READ_BATCH)
        return [(seq, codec.decode_event(name, id, data)) for _, _, seq, data in rows]

    return tail(rt.event_signal, read, _first, after)


def type_events(
    rt: DurableRuntime, etype: EntityType, after: int
) -> AsyncIterator[StoredEvent[Any]]:
    """Every event of every entity of an event-sourced type after log
    position `after`, then live."""
    rt._check_open()
    store, codec, name = rt.store, rt.codec, etype.name

    async def read(position: int) -> list[StoredEvent[Any]]:
        rt._check_open()
        out: list[StoredEvent[Any]] = []
        for at, id_text, seq, data in await store.read_events(name, None, position, READ_BATCH):
            id = codec.decode_id(name, id_text)
            event = codec.decode_event(name, id, data)
            out.append(StoredEvent(at, address_of(etype, id), seq, event))  # type: ignore[arg-type]
        return out

    return tail(rt.event_signal, read, _position, after)


async def stored_dead_letters(rt: DurableRuntime) -> list[DeadLetter]:
    """Every persisted dead letter, oldest first, decoded where possible."""
    rt._check_open()
    return [decode_dead(rt.registry, rt.codec, r) for r in await rt.store.dead_letters()]


def held(rt: DurableRuntime) -> dict[tuple[str, str], BaseException]:
    """Entities held because their state cannot be loaded: `(entity type,
    id text) -> the load error`."""
    return {
        (name, rt.codec.encode_id(name, id)): state.error
        for (name, id), state in rt._cache.items()
        if type(state) is Held
    }


def decode_dead(registry: Registry, codec: Codec, row: DeadRow) -> DeadLetter:
    """A stored dead letter as a `DeadLetter`; parts that do not decode stay bytes."""
    etype = registry.types.get(row.entity_type)
    id: Hashable = row.id_text
    message: object = row.message
    state: object = row.state
    recent: tuple[object, ...] = row.recent
    if etype is not None:
        with contextlib.suppress(Exception):
            id = codec.decode_id(etype.name, row.id_text)
        with contextlib.suppress(Exception):
            message = codec.decode_message(etype.name, row.message, id)
        with contextlib.suppress(Exception):
            recent = tuple(codec.decode_message(etype.name, m, id) for m in row.recent)
        if row.state is not None:
            with contextlib.suppress(Exception):
                state = codec.decode_state(etype.name, id, row.state, row.version)
        address: Address[Any] = address_of(etype, id)
    else:
        address = make_ref(Ref, row.entity_type, id)
    return DeadLetter(
        seq=row.id,
        to=address,
        message=message,
        error_type=row.error_type,
        error=row.error,
        traceback=row.traceback,
        state=state,
        recent=recent,
        at=datetime.fromtimestamp(row.at, UTC),
    )


def _first(item: tuple[int, object]) -> int:
    return item[0]


def _position(item: StoredEvent[Any]) -> int:
    return item.position
