"""The recent messages a Postgres state row carries (for a dead letter's
`recent`): the newest that fit in `RECENT_BYTES`, packed into one value, and
the statement that writes those of partitions being handed over. Pure."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from pachytype._core.turn import RECENT

RECENT_BYTES: Final = 64 * 1024
"""Most bytes of recent messages stored with a state: the newest that fit, at least one."""


def bounded(payloads: tuple[bytes, ...]) -> tuple[bytes, ...]:
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


def leaving_statement(s: str) -> str:
    """Recent messages of entities of partitions this node is losing (in
    schema `s`), written only where the lease row is still the node's at the
    epoch its runtime knew, under `FOR KEY SHARE`: a release (`FOR UPDATE`)
    waits for it, so the next owner reads them. Parameters: partitions and
    their epochs, the node id, then per row type, id, partition and packed
    recent messages, and the ask inbox type (kept only while followed, as in
    a commit: `pachytype._inbox`)."""
    return (
        f"WITH l AS (SELECT partition FROM {s}.leases WHERE owner = $3 "
        f"AND (partition, epoch) IN (SELECT * FROM unnest($1::int[], $2::bigint[])) "
        f"FOR KEY SHARE) "
        f"INSERT INTO {s}.states "
        f"(entity_type, entity_id, partition, version, data, activations, recent) "
        f"SELECT u.t, u.e, u.p, 0, NULL, 0, u.r "
        f"FROM unnest($4::text[], $5::text[], $6::int[], $7::bytea[]) AS u(t, e, p, r) "
        f"WHERE u.p IN (SELECT partition FROM l) AND (u.t <> $8 OR EXISTS (SELECT 1 "
        f"FROM {s}.watches w WHERE w.entity_type = u.t AND w.entity_id = u.e)) "
        f"ON CONFLICT (entity_type, entity_id) DO UPDATE SET recent = excluded.recent"
    )
