"""What no store can keep, refused at encoding: the size limits, NUL in an id,
lone surrogates (see the rules in `pachytype._codec`)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

from pachytype._errors import EncodeError, ValueTooLargeError

MAX_ID_BYTES: Final = 1024
"""The longest id, in bytes of its canonical text (UTF-8). Ids are database
keys, repeated in every message row and index entry (PostgreSQL refuses
index entries over about 2.7 KB); a longer natural key should be hashed."""

MAX_MESSAGE_BYTES: Final = 1024 * 1024
"""The largest encoded message (1 MiB of JSON). Messages are copied through
mailboxes, batches and dead letters; bulky data should travel by reference."""

MAX_STATE_BYTES: Final = 16 * 1024 * 1024
"""The largest encoded state (16 MiB of JSON). A state is written whole at
every commit of its entity: a state near this size is already slow."""


SURROGATE_FIX: Final = (
    "a lone surrogate is not Unicode text and has no UTF-8 encoding (it usually comes "
    "from bytes decoded with errors='surrogateescape', e.g. file names): decode such "
    "bytes strictly, or carry them as hex or base64"
)


def unencodable(error: BaseException) -> str:
    """What an encoding failure means, and what to do about a lone surrogate."""
    text = str(error)
    if "surrogates not allowed" in text:
        return f"a str in it holds a lone surrogate; {SURROGATE_FIX}"
    return text


def storable_text(text: str) -> str:
    """`text` (an error message, a traceback) as every store can keep it: lone
    surrogates (no UTF-8 encoding) and NUL (refused by PostgreSQL's text) are
    written as the escapes `\\udcff` and `\\x00`, so they stay visible."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def check_id_text(entity_type: str, id: Hashable, text: str) -> None:
    """Refuse an id text no store can keep as a key (see the module's rules)."""
    at = text.find("\x00")
    if at >= 0:
        raise EncodeError(
            entity_type,
            id,
            "id",
            f"its text holds NUL ('\\x00', at index {at}), which PostgreSQL cannot store "
            f"in text and no ecosystem accepts in an id (ids are database keys); remove it, "
            f"or carry binary ids as hex",
        )
    try:
        size = len(text.encode())
    except UnicodeEncodeError as error:
        raise EncodeError(
            entity_type,
            id,
            "id",
            f"its text holds the lone surrogate {text[error.start]!r} at index "
            f"{error.start}; {SURROGATE_FIX}",
        ) from None
    if size > MAX_ID_BYTES:
        raise ValueTooLargeError(
            entity_type,
            id,
            "id",
            size,
            MAX_ID_BYTES,
            "ids are database keys: use a shorter id (e.g. a hash of the long value, "
            "keeping the value itself in the state)",
        )
