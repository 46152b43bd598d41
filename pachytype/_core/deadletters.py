"""Dead letters as stored: a failed message, why it failed, and its context.

One rule for every durable ecosystem: a dead letter keeps the message as
stored (an unreadable one keeps its original bytes), the error's type,
text and traceback, the state the entity kept (when it can be encoded) and
its recent messages ending with this one (those that can be encoded; a
message that cannot be stored is kept as its `repr`, for the operator,
never decoded).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable

from pachytype._codec import storable_text
from pachytype._core.turn import UNBORN, Failure, Unreadable
from pachytype._store import DeadRow

EncodeMessage = Callable[[str, object], bytes]
EncodeState = Callable[[str, object], bytes]


def stored_message(encode: EncodeMessage, entity_type: str, message: object) -> bytes:
    """A message as stored (an unreadable one keeps its original bytes)."""
    if type(message) is Unreadable:
        return message.payload
    return encode(entity_type, message)


def dead_row(
    entity_type: str,
    id_text: str,
    failure: Failure,
    version: int,
    encode_message: EncodeMessage,
    encode_state: EncodeState,
) -> DeadRow:
    """The dead letter of `failure` at entity `(entity_type, id_text)`."""
    state: bytes | None = None
    if failure.state is not None and failure.state is not UNBORN:
        with contextlib.suppress(Exception):
            state = encode_state(entity_type, failure.state)
    recent: list[bytes] = []
    for message in failure.recent:
        with contextlib.suppress(Exception):
            recent.append(stored_message(encode_message, entity_type, message))
    try:
        payload = stored_message(encode_message, entity_type, failure.message)
    except Exception:
        payload = repr(failure.message).encode()
    return raw_dead_row(entity_type, id_text, payload, failure.error, state, version, recent)


def raw_dead_row(
    entity_type: str,
    id_text: str,
    payload: bytes,
    error: BaseException,
    state: bytes | None,
    version: int,
    recent: list[bytes],
) -> DeadRow:
    """A dead letter from parts already stored (mail with no entity to run it)."""
    return DeadRow(
        entity_type=entity_type,
        id_text=id_text,
        message=payload,
        # Any text an exception carries must be storable by every store.
        error_type=storable_text(type(error).__qualname__),
        error=storable_text(str(error)),
        traceback=storable_text("".join(traceback.format_exception(error))),
        state=state,
        version=version,
        recent=tuple(recent) or (payload,),
        at=time.time(),
    )
