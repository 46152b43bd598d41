"""The recent messages a Postgres state row carries (`_postgres/recent.py`, pure): the
last `RECENT`, the newest kept when they would pass `RECENT_BYTES`, and
stored as one value that reads back exactly."""

from __future__ import annotations

from pachytype._core.turn import RECENT
from pachytype._postgres.recent import RECENT_BYTES, bounded, pack_recent, unpack_recent


def test_the_last_messages_are_kept_oldest_first() -> None:
    messages = tuple(f'["Add",{{"n":{i}}}]'.encode() for i in range(RECENT + 3))
    assert bounded(messages) == messages[-RECENT:]


def test_big_messages_leave_room_to_the_newest_one() -> None:
    old, huge, new = b"o" * 10, b"h" * RECENT_BYTES, b"n" * 100
    assert bounded((old, huge, new)) == (new,)
    assert bounded((huge,)) == (huge,)  # the newest is always kept


def test_packed_messages_read_back_exactly() -> None:
    messages = (b"", b"\x00\xff", b"x" * 70_000, b'["Fail",{"reason":"r"}]')
    assert unpack_recent(pack_recent(messages)) == messages
    assert unpack_recent(None) == ()
