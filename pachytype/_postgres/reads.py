"""Reads of committed rows on PostgreSQL, never activating anything: journals
of event-sourced entities, event logs and dead letter rows (for a node's
`PostgresStore`, the ecosystem and `pachytype inspect`), and what the
ecosystem's `state`, `events` and `events_of` return."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]  # no stubs published

from pachytype._address import Ref
from pachytype._codec import Codec
from pachytype._core.held import Held
from pachytype._core.turn import UNBORN
from pachytype._errors import InitError
from pachytype._events import READ_BATCH, Signal, StoredEvent, tail
from pachytype._registry import EntityType
from pachytype._runtime.dispatch import address_of
from pachytype._runtime.durable import rebuild_journal
from pachytype._store import DeadRow, EntityKey, Journal, LogRow

S = TypeVar("S")


async def read_journals(
    pool: asyncpg.Pool, s: str, keys: Sequence[EntityKey]
) -> dict[EntityKey, Journal]:
    """Latest snapshot and later events of each of `keys` (absent: neither)."""
    if not keys:
        return {}
    types = [k[0] for k in keys]
    ids = [k[1] for k in keys]
    snaps = await pool.fetch(
        f"SELECT s.entity_type, s.entity_id, s.seq, s.state, s.version FROM {s}.snapshots s "
        f"JOIN unnest($1::text[], $2::text[]) AS k(t, e) ON s.entity_type = k.t "
        f"AND s.entity_id = k.e",
        types,
        ids,
    )
    snapshots = {(r[0], r[1]): (int(r[2]), bytes(r[3]), int(r[4])) for r in snaps}
    rows = await pool.fetch(
        f"SELECT v.entity_type, v.entity_id, v.seq, v.payload FROM {s}.events v "
        f"JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(t, e, a) "
        f"ON v.entity_type = k.t AND v.entity_id = k.e AND v.seq > k.a "
        f"ORDER BY v.entity_type, v.entity_id, v.seq",
        types,
        ids,
        [snapshots.get(k, (0,))[0] for k in keys],
    )
    events: dict[EntityKey, list[tuple[int, bytes]]] = {}
    for r in rows:
        events.setdefault((r[0], r[1]), []).append((int(r[2]), bytes(r[3])))
    return {key: Journal(snapshots.get(key), events.get(key, [])) for key in {*snapshots, *events}}


async def read_events(
    pool: asyncpg.Pool, s: str, entity_type: str, id_text: str | None, after: int, limit: int
) -> list[LogRow]:
    """Committed events of one entity after sequence number `after`, or of a
    whole type after log position `after`, in order."""
    if id_text is not None:
        rows = await pool.fetch(
            f"SELECT position, entity_id, seq, payload FROM {s}.events "
            f"WHERE entity_type = $1 AND entity_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            entity_type,
            id_text,
            after,
            limit,
        )
    else:
        rows = await pool.fetch(
            f"SELECT position, entity_id, seq, payload FROM {s}.events "
            f"WHERE entity_type = $1 AND position > $2 ORDER BY position LIMIT $3",
            entity_type,
            after,
            limit,
        )
    return [(int(r[0]), r[1], int(r[2]), bytes(r[3])) for r in rows]


async def read_dead(pool: asyncpg.Pool, s: str) -> list[DeadRow]:
    """Every dead letter, oldest first (`at` as Unix time)."""
    rows = await pool.fetch(
        f"SELECT seq, entity_type, entity_id, message, error_type, error, traceback, "
        f"state_version, state, recent, extract(epoch FROM at)::float8 "
        f"FROM {s}.dead_letters ORDER BY seq"
    )
    return [
        DeadRow(
            entity_type=r[1],
            id_text=r[2],
            message=r[3],
            error_type=r[4],
            error=r[5],
            traceback=r[6],
            state=r[8],
            version=r[7] or 0,
            recent=tuple(r[9]),
            at=float(r[10]),
            id=int(r[0]),
        )
        for r in rows
    ]


async def read_state(
    pool: asyncpg.Pool, s: str, codec: Codec, etype: EntityType, ref: Ref[Any, S]
) -> S:
    """`Postgres.state`: the committed state (its journal rebuilt, for an
    event-sourced entity), or `init(id)` if there is none."""
    id_text = codec.encode_id(etype.name, ref.id)
    if etype.event_sourced:
        key = (etype.name, id_text)
        journals = await read_journals(pool, s, [key])
        state = rebuild_journal(codec, etype, ref.id, journals.get(key))[0]
        if isinstance(state, Held):
            raise state.error
        if state is not UNBORN:
            return cast(S, state)
    else:
        row = await pool.fetchrow(
            f"SELECT version, data FROM {s}.states WHERE entity_type = $1 AND entity_id = $2",
            etype.name,
            id_text,
        )
        if row is not None and row["data"] is not None:
            return cast(S, codec.decode_state(etype.name, ref.id, row["data"], row["version"]))
    try:
        initial: S = etype.instance.init(ref.id)
    except Exception as error:
        raise InitError(etype.name, ref.id, error) from error
    return initial


def entity_events(
    pool: asyncpg.Pool,
    s: str,
    codec: Codec,
    etype: EntityType,
    ref: Ref[Any, Any],
    signal: Signal,
    after: int,
) -> AsyncIterator[tuple[int, Any]]:
    """`Postgres.events`: one entity's events after sequence number `after`."""
    name, id = etype.name, ref.id
    id_text = codec.encode_id(name, id)

    async def read(position: int) -> list[tuple[int, object]]:
        rows = await read_events(pool, s, name, id_text, position, READ_BATCH)
        return [(seq, codec.decode_event(name, id, data)) for _, _, seq, data in rows]

    return tail(signal, read, _first, after)


def type_events(
    pool: asyncpg.Pool, s: str, codec: Codec, etype: EntityType, signal: Signal, after: int
) -> AsyncIterator[StoredEvent[Any]]:
    """`Postgres.events_of`: every event of a type after log position `after`."""
    name = etype.name

    async def read(position: int) -> list[StoredEvent[Any]]:
        out: list[StoredEvent[Any]] = []
        for at, id_text, seq, data in await read_events(pool, s, name, None, position, READ_BATCH):
            id = codec.decode_id(name, id_text)
            event = codec.decode_event(name, id, data)
            out.append(StoredEvent(at, address_of(etype, id), seq, event))  # type: ignore[arg-type]
        return out

    return tail(signal, read, _position, after)


def _first(item: tuple[int, object]) -> int:
    return item[0]


def _position(item: StoredEvent[Any]) -> int:
    return item.position
