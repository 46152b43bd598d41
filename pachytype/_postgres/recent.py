"""The recent messages a Postgres state row carries (for a dead letter's
`recent`): the newest that fit in `RECENT_BYTES`, packed into one value. Pure."""

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
