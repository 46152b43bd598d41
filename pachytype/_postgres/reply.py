"""Replies to `call`s on PostgreSQL, as pure code: the caller's reply channel
and key, and the NOTIFY payloads that carry answers to it (no I/O here; see
`_postgres/client.py` for the caller, `_postgres/commit.py` for the owner).

Design note
-----------
* **A channel per caller.** Every `Postgres` instance (client or node)
  LISTENs on a channel of its own. A call's mailbox row names that channel
  (`reply_to`) and the caller's key (`reply_key`). The owner that commits
  the call's message NOTIFYs the answer on that channel *in the committing
  transaction*, so no caller sees a reply before its commit, and the reply
  needs no round trip: the state (or the error) is in the payload.
* **Answers are batched.** One payload carries every answer of a batch for
  one caller, up to `PAYLOAD_LIMIT` bytes (PostgreSQL refuses 8000); an
  answer too big to travel alone goes as a *pointer* and the caller reads
  it from the `dedupe` row.
* **The table is the truth.** The answer is also written with the call's
  dedupe id in the same transaction, so a caller whose LISTEN connection
  was lost (notifications are not queued for a dead session) reads it
  there.
* **Notifications are authenticated.** Any role that can connect may
  NOTIFY any channel, so each payload opens with an HMAC of its body under
  the caller's key; the key travels only in mailbox rows, never in a
  notification. A payload with a wrong tag is dropped whole.

Payload: 32 hex digits of tag, then a JSON list of entries
`[msg id hex, version, base64 state]`, `[msg id hex, null, null, error
type, error text]` or `[msg id hex]` (a pointer).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
import zlib
from typing import Any, Final, TypeAlias

import orjson
from attrs import frozen

PAYLOAD_LIMIT: Final = 7900
"""Largest NOTIFY payload we send (PostgreSQL's limit is 8000 bytes)."""

_TAG: Final = 32
"""Hex digits of the HMAC tag that opens a payload."""


@frozen
class Answer:
    """One answer as the caller receives it: a state (`version`, `data`), an
    error (`error_type`, `error`), or neither (a pointer: read the dedupe row)."""

    msg_id: uuid.UUID
    version: int | None = None
    data: bytes | None = None
    error_type: str | None = None
    error: str | None = None

    @property
    def pointer(self) -> bool:
        return self.data is None and self.error_type is None


def reply_channel(schema: str, owner: str) -> str:
    """The channel on which the instance `owner` (a random hex string) of
    `schema` receives its answers (a valid identifier, under 63 characters)."""
    return f"pachytype_{zlib.crc32(schema.encode()):08x}_r_{owner[:20]}"


def new_key() -> bytes:
    """A fresh reply key (random; kept by its caller, written in its call rows)."""
    return os.urandom(16)


def _tag(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()[:_TAG]


def entry(
    msg_id: uuid.UUID,
    version: int | None,
    data: bytes | None,
    error_type: str | None,
    error: str | None,
) -> bytes:
    """One answer, JSON-encoded for `pack`."""
    if error_type is not None:
        return orjson.dumps([msg_id.hex, None, None, error_type, error])
    assert data is not None
    return orjson.dumps([msg_id.hex, version, base64.b64encode(data).decode()])


def pack(key: bytes, entries: list[tuple[uuid.UUID, bytes]]) -> list[str]:
    """`(msg id, entry)` answers for one caller as few payloads as fit; an
    answer too big for a payload of its own goes as a pointer."""
    room = PAYLOAD_LIMIT - _TAG - 2
    payloads: list[str] = []
    parts: list[bytes] = []
    size = 0
    for msg_id, body in entries:
        if len(body) > room:
            body = orjson.dumps([msg_id.hex])
        if parts and size + len(body) + 1 > room:
            payloads.append(_seal(key, parts))
            parts, size = [], 0
        parts.append(body)
        size += len(body) + 1
    if parts:
        payloads.append(_seal(key, parts))
    return payloads


def _seal(key: bytes, parts: list[bytes]) -> str:
    body = b"[" + b",".join(parts) + b"]"
    return _tag(key, body) + body.decode()


Opened: TypeAlias = tuple[int, int | None, bytes | None, str | None, str | None]
"""One answer as `opened` gives it: `(msg id as an int, version, data, error
type, error)`, the fields of `Answer`."""


def opened(key: bytes, payload: str) -> list[Opened] | None:
    """The answers of a payload, or None if it was not sealed with `key`
    (forged, or garbled) or does not parse. The caller's hot path: one HMAC a
    payload and plain tuples, the message ids as ints (no `uuid.UUID` built)."""
    body = payload[_TAG:].encode()
    if not hmac.compare_digest(payload[:_TAG], _tag(key, body)):
        return None
    try:
        items: list[list[Any]] = orjson.loads(body)
        return [_opened(item) for item in items]
    except (ValueError, TypeError, IndexError, binascii.Error):
        return None


def unpack(key: bytes, payload: str) -> list[Answer] | None:
    """`opened`, as `Answer`s."""
    answers = opened(key, payload)
    if answers is None:
        return None
    return [Answer(uuid.UUID(int=i), v, d, t, e) for i, v, d, t, e in answers]


def _opened(item: list[Any]) -> Opened:
    text = item[0]
    if len(text) != 32:
        raise ValueError("not a message id")
    msg_id = int(text, 16)
    if len(item) == 1:
        return msg_id, None, None, None, None
    if len(item) == 5:
        return msg_id, None, None, str(item[3]), str(item[4])
    return msg_id, int(item[1]), binascii.a2b_base64(item[2]), None, None
