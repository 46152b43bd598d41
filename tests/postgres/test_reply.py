"""The answers of calls as they travel in notifications (`_postgres/reply.py`, pure):
sealed with the caller's key, batched under PostgreSQL's payload limit, and
anything not sealed with the key (forged by any role that can NOTIFY, or
garbled) is refused."""

from __future__ import annotations

import uuid

from pachytype._postgres.reply import (
    PAYLOAD_LIMIT,
    Answer,
    entry,
    new_key,
    pack,
    reply_channel,
    unpack,
)


def _state(msg_id: uuid.UUID, data: bytes) -> tuple[uuid.UUID, bytes]:
    return msg_id, entry(msg_id, 3, data, None, None)


def test_answers_come_back_as_sent() -> None:
    key = new_key()
    a, b = uuid.uuid4(), uuid.uuid4()
    payloads = pack(key, [_state(a, b"[1,2]"), (b, entry(b, None, None, "ValueError", "no"))])
    assert len(payloads) == 1
    assert unpack(key, payloads[0]) == [
        Answer(a, version=3, data=b"[1,2]"),
        Answer(b, error_type="ValueError", error="no"),
    ]


def test_a_payload_not_sealed_with_the_callers_key_is_refused() -> None:
    key = new_key()
    (payload,) = pack(key, [_state(uuid.uuid4(), b"1")])
    assert unpack(new_key(), payload) is None  # another caller's, or a forger's key
    tampered = payload[:-3] + payload[-3:].replace("]", " ]", 1)
    assert unpack(key, tampered) is None
    assert unpack(key, "0" * 32 + "[]") is None
    assert unpack(key, "not a payload") is None


def test_many_answers_are_split_under_the_notify_limit() -> None:
    key = new_key()
    answers = [_state(uuid.uuid4(), bytes(300)) for _ in range(100)]
    payloads = pack(key, answers)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= PAYLOAD_LIMIT for p in payloads)
    got = [a for p in payloads for a in unpack(key, p) or []]
    assert [a.msg_id for a in got] == [m for m, _ in answers]
    assert all(a.data == bytes(300) for a in got)


def test_an_answer_too_big_for_a_payload_goes_as_a_pointer() -> None:
    key = new_key()
    big, small = uuid.uuid4(), uuid.uuid4()
    payloads = pack(key, [_state(big, bytes(PAYLOAD_LIMIT)), _state(small, b"7")])
    got = [a for p in payloads for a in unpack(key, p) or []]
    assert got == [Answer(big), Answer(small, version=3, data=b"7")]
    assert got[0].pointer and not got[1].pointer


def test_reply_channels_are_identifiers_of_their_schema() -> None:
    owner = uuid.uuid4().hex
    name = reply_channel("bank_prod", owner)
    assert len(name) <= 63 and name.isidentifier()
    assert reply_channel("bank_test", owner) != name
