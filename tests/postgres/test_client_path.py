"""The client path on PostgreSQL without a server (`_postgres/client.py`, with a
stand-in pool): message ids unique and in creation order, across a fork too;
partitions unchanged (stored rows depend on them); a call's answer taken only
from a notification sealed with its caller's key; a call whose commit fails
raises the commit's error."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pachytype._clock import SystemClock
from pachytype._codec import Codec
from pachytype._errors import ActivationError, EcosystemClosedError
from pachytype._postgres.client import ClientPath, new_message_id
from pachytype._postgres.partition import partition_of
from pachytype._postgres.reply import entry, new_key, pack
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY

_RANDOM_BITS = (1 << 80) - 1  # all but the 48 bits of milliseconds


def test_message_ids_are_unique_uuid7_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_message_id() for _ in range(200_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert len({i.int & _RANDOM_BITS for i in ids}) == len(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    stamps = [i.int >> 80 for i in ids]
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)
    # An id drawn in a later millisecond sorts after every earlier one.
    while time.time_ns() // 1_000_000 <= stamps[-1]:
        pass
    assert new_message_id() > max(ids)


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, as hex, then exit at once
        try:
            os.write(write, " ".join(new_message_id().hex for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = {int(h, 16) & _RANDOM_BITS for h in pipe.read().split()}
    os.waitpid(pid, 0)
    parent = {new_message_id().int & _RANDOM_BITS for _ in range(100)}
    assert len(child) == 100
    assert not child & parent


def test_partitions_are_the_ones_stored_rows_were_written_with() -> None:
    # Values computed by the partition function rows were stored with: a
    # change here moves entities away from their mail and state.
    assert [partition_of("account", str(i), 64) for i in range(16)] == [
        9, 38, 6, 4, 58, 10, 20, 42, 55, 58, 31, 41, 19, 22, 42, 55,
    ]  # fmt: skip
    ids = ("", "a", "é", '"q"', "[1,2]", "x" * 200)
    assert [partition_of("tally", i, 7) for i in ids] == [6, 4, 1, 3, 2, 2]
    types = ("sink", "journal", "event_sink", "pachytype.inbox")
    assert [partition_of(t, "42", 1024) for t in types] == [1003, 910, 763, 778]


class _Conn:
    """Stands in for a connection of the pool: records each INSERT's message
    ids in its pool, or fails while its pool says so."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.closed = False

    async def fetchval(self, _query: str, *args: Any) -> int:
        pool = self.pool
        if pool.failures:
            self.closed = True
            raise pool.failures.pop(0)
        pool.inserted.append(list(args[0]))
        pool.committed.set()
        return 0

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.closed = True


class _Pool:
    """Stands in for the asyncpg pool: hands out `_Conn`s, answers reads of
    the table with nothing."""

    def __init__(self) -> None:
        self.inserted: list[list[uuid.UUID]] = []
        self.committed = asyncio.Event()
        self.failures: list[BaseException] = []
        self.taken = 0  # connections acquired and not released

    async def acquire(self) -> _Conn:
        self.taken += 1
        return _Conn(self)

    async def release(self, _conn: _Conn) -> None:
        self.taken -= 1

    def held(self) -> int:
        return self.taken

    async def fetchval(self, query: str, *args: Any) -> int:
        return await _Conn(self).fetchval(query, *args)

    async def fetch(self, _query: str, *_args: Any) -> list[Any]:
        return []


def _stand_in(path: ClientPath) -> _Pool:
    assert isinstance(path.pool, _Pool)
    return path.pool


@pytest.fixture
async def path() -> AsyncIterator[ClientPath]:
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    path = ClientPath(REGISTRY, "client_path", SystemClock(), 60.0, spawn, "test")
    path.codec = Codec(REGISTRY)
    path.partitions = 8
    path.pool = _Pool()
    yield path
    path.pool = None
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    path.close()


async def _committed_call(path: ClientPath, n: int) -> tuple[asyncio.Task[int], uuid.UUID]:
    """A call of `tally.add(n)` whose row was committed; its message id."""
    pool = _stand_in(path)
    call = asyncio.create_task(path.call(refs.tally(TallyId("t")).add(n)))
    await pool.committed.wait()
    pool.committed.clear()
    (msg_id,) = pool.inserted[-1]
    return call, msg_id


async def test_a_forged_notification_resolves_no_call(path: ClientPath) -> None:
    call, msg_id = await _committed_call(path, 2)
    assert msg_id in path.calls
    forged = pack(new_key(), [(msg_id, entry(msg_id, 1, b"666", None, None))])
    path.on_answers(None, 0, path.reply_channel, forged[0])
    genuine = pack(path._reply_key, [(msg_id, entry(msg_id, 1, b"2", None, None))])[0]
    tampered = genuine.replace("2", "3")
    path.on_answers(None, 0, path.reply_channel, tampered)
    path.on_answers(None, 0, path.reply_channel, "not a payload")
    assert not path.calls.by_id[msg_id.int].fut.done()
    path.on_answers(None, 0, path.reply_channel, genuine)
    assert await call == 2
    assert msg_id not in path.calls


async def test_one_notification_answers_each_of_its_calls(path: ClientPath) -> None:
    first, a = await _committed_call(path, 1)
    second, b = await _committed_call(path, 2)
    entries = [
        (b, entry(b, 1, b"5", None, None)),
        (a, entry(a, None, None, "ValueError", "too big")),
    ]
    (payload,) = pack(path._reply_key, entries)
    path.on_answers(None, 0, path.reply_channel, payload)
    assert await second == 5
    with pytest.raises(ActivationError) as raised:
        await first
    assert isinstance(raised.value.__cause__, ValueError)
    assert str(raised.value.__cause__) == "too big"


async def test_a_call_whose_commit_fails_raises_the_commits_error(path: ClientPath) -> None:
    pool = _stand_in(path)
    pool.failures = [ConnectionResetError("the server went away"), ConnectionResetError("still")]
    with pytest.raises(ConnectionResetError, match="still"):
        await path.call(refs.tally(TallyId("t")).add(1))
    assert not path.calls


async def test_a_commit_whose_connection_broke_is_sent_again_on_another(path: ClientPath) -> None:
    pool = _stand_in(path)
    pool.failures = [ConnectionResetError("the server went away")]
    call, msg_id = await _committed_call(path, 4)
    (payload,) = pack(path._reply_key, [(msg_id, entry(msg_id, 1, b"4", None, None))])
    path.on_answers(None, 0, path.reply_channel, payload)
    assert await call == 4
    # The next call's commit goes on a connection that works.
    call, msg_id = await _committed_call(path, 5)
    assert pool.inserted[-1] == [msg_id]
    assert pool.held() == 1  # (the broken one given back)
    path.close()
    with pytest.raises(EcosystemClosedError):
        await call


async def test_the_group_commit_holds_a_connection_only_while_calls_wait(
    path: ClientPath,
) -> None:
    pool = _stand_in(path)
    first, a = await _committed_call(path, 1)
    second, b = await _committed_call(path, 2)
    assert pool.held() == 1  # one connection for both commits
    for msg_id, n in ((a, b"1"), (b, b"2")):
        (payload,) = pack(path._reply_key, [(msg_id, entry(msg_id, 1, n, None, None))])
        path.on_answers(None, 0, path.reply_channel, payload)
    assert (await first, await second) == (1, 2)
    while pool.held():  # given back once no call waits
        await asyncio.sleep(0)
    third, c = await _committed_call(path, 3)
    assert pool.held() == 1
    (payload,) = pack(path._reply_key, [(c, entry(c, 1, b"3", None, None))])
    path.on_answers(None, 0, path.reply_channel, payload)
    assert await third == 3
