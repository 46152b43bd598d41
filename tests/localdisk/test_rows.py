"""The SQLite store writes every row of a group commit, whatever the batch's
size: the hot rows (mail, states) go in by several rows a statement, and
the sizes on either side of each statement size must store exactly what
one row a statement would."""

from __future__ import annotations

from pathlib import Path

import pytest

from pachytype._sqlite import SqliteStore
from pachytype._store import CommitBatch, EntityRow, MailRow

SIZES = [1, 15, 16, 17, 127, 128, 129, 145, 300, 1000]


def _mail(first: int, n: int) -> list[MailRow]:
    return [(first + i, "sink", f"id-{i % 7}", f"message {first + i}".encode()) for i in range(n)]


@pytest.mark.parametrize("n", SIZES)
async def test_every_mail_row_of_a_batch_is_stored_in_order(tmp_path: Path, n: int) -> None:
    store = SqliteStore(tmp_path / "rows.db")
    await store.open("fingerprint", lambda: None)
    sent = _mail(1, n) + _mail(1 + n, 3)  # a second, small batch after it
    await store.commit(CommitBatch(mail=sent[:n]))
    await store.commit(CommitBatch(mail=sent[n:]))
    await store.close()

    again = SqliteStore(tmp_path / "rows.db")
    recovery = await again.open("fingerprint", lambda: None)
    await again.close()
    assert recovery.mail == sent
    assert recovery.next_id == n + 4


@pytest.mark.parametrize("n", SIZES)
async def test_every_state_row_of_a_batch_is_stored(tmp_path: Path, n: int) -> None:
    store = SqliteStore(tmp_path / "rows.db")
    await store.open("fingerprint", lambda: None)
    keys = [("sink", f"id-{i}") for i in range(n)]
    first: list[EntityRow] = [(t, i, f"{i} v1".encode(), 1, 10, None) for t, i in keys]
    await store.commit(CommitBatch(entities=first))
    # One batch holding two rows of the first entity (they commute: a row
    # without a state keeps the stored one, the higher cursor wins), then
    # a new state for every other one.
    second: list[EntityRow] = [
        ("sink", "id-0", None, 0, 12, None),
        *[(t, i, f"{i} v2".encode(), 2, 11, None) for t, i in keys[1:]],
        ("sink", "id-0", None, 0, 11, None),
    ]
    await store.commit(CommitBatch(entities=second))
    states = await store.load_states(keys)
    mail = [(i, "sink", "id-0", b"m") for i in (11, 12, 13)]
    await store.commit(CommitBatch(mail=mail))
    await store.close()

    assert states[keys[0]] == (b"id-0 v1", 1, ())
    assert all(states[key] == (f"{key[1]} v2".encode(), 2, ()) for key in keys[1:])
    again = SqliteStore(tmp_path / "rows.db")
    recovery = await again.open("fingerprint", lambda: None)
    await again.close()
    assert recovery.mail == mail[2:]  # consumed up to 12, the higher of the two cursors
