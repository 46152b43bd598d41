"""LocalDisk's own promises: restart resumes, dead letters persist and can be
redelivered, one process per database, held entities, idle entities leave
memory, versioned state on load. (The shared behaviour is in
tests/conformance/test_conformance.py, which runs on LocalDisk too.)"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from attrs import frozen

from examples.bank import refs as bank
from examples.bank.account import AccountId, AccountState
from pachytype import (
    Activation,
    DeadLetter,
    Entity,
    EntityType,
    LocalDisk,
    PachytypeError,
    Registry,
    StoreLockedError,
)
from pachytype._errors import StateVersionError
from pachytype._sqlite import SqliteStore
from tests.bank_v1.registry import REGISTRY as BANK_V1
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY


def tally(name: str) -> refs.TallyRef:
    return refs.tally(TallyId(name))


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


async def test_mail_left_at_close_is_delivered_after_reopening(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY, max_batch=8) as eco:
        for _ in range(20):
            await eco.send(*(tally(f"p{i}").add(n=1) for i in range(50)))
        # closed at once: most of that mail is stored but not yet handled
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        assert [await eco.state(tally(f"p{i}")) for i in range(50)] == [20] * 50
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


async def test_an_overdue_delayed_message_fires_at_once_after_reopening(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(refs.log(1).append(value=7).after(timedelta(milliseconds=100)))
    assert rows(db, "SELECT count(*) FROM timers") == [(1,)]
    await asyncio.sleep(0.2)
    async with LocalDisk(db, REGISTRY) as eco:
        started = time.monotonic()
        async for state in eco.follow(refs.log(1)):
            if state:
                assert state == (7,)
                break
        assert time.monotonic() - started < 0.5
    assert rows(db, "SELECT count(*) FROM timers") == [(0,)]


async def test_a_pending_delayed_message_waits_for_its_time_across_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        sent = time.monotonic()
        await eco.call(refs.emitter("r").remind(to=refs.log(2), value=3, delay_ms=400))
    async with LocalDisk(db, REGISTRY) as eco:
        assert await eco.state(refs.log(2)) == ()
        async for state in eco.follow(refs.log(2)):
            if state:
                assert state == (3,)
                break
        assert time.monotonic() - sent >= 0.39


async def test_follow_and_call_work_after_reopening(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("f").add(n=5))
    async with LocalDisk(db, REGISTRY) as eco:
        seen: list[int] = []

        async def watch() -> None:
            async for state in eco.follow(tally("f")):
                seen.append(state)
                if len(seen) == 2:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.02)
        assert await eco.call(tally("f").add(n=1)) == 6
        await asyncio.wait_for(watcher, 5)
        assert seen == [5, 6]


class Picky(Entity[str, "Take", int]):
    """Refuses odd amounts while `refusing` is set (a bug, fixed by clearing it)."""

    refusing: ClassVar[bool] = True

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: Take, state: int) -> Activation[int]:
        if Picky.refusing and msg.n % 2:
            raise ValueError(f"odd amount {msg.n}")
        return [], state + msg.n


@frozen
class Take:
    n: int


PICKY = Registry(
    "tests.picky",
    lambda: [EntityType(entity=Picky, messages=(Take,), state=int, id_type=str)],
    fingerprint="",
)


async def test_dead_letters_persist_and_can_be_redelivered_after_a_fix(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    picky = Picky.address("p")
    Picky.refusing = True
    try:
        async with LocalDisk(db, PICKY) as eco:
            await eco.send(picky.post(Take(2)), picky.post(Take(3)), picky.post(Take(4)))
            await eco.settle()
            assert await eco.state(picky) == 6
        async with LocalDisk(db, PICKY) as eco:
            (dead,) = await eco.dead_letters()
            assert dead.to == picky
            assert dead.message == Take(3)
            assert (dead.error_type, dead.error) == ("ValueError", "odd amount 3")
            assert "ValueError: odd amount 3" in dead.traceback
            assert dead.state == 2
            assert dead.recent == (Take(2), Take(3))
            Picky.refusing = False  # the code fix
            await eco.redeliver(dead)
            await eco.settle()
            assert await eco.state(picky) == 9
            assert await eco.dead_letters() == []
    finally:
        Picky.refusing = True


async def test_a_second_ecosystem_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY):
        with pytest.raises(StoreLockedError) as info:
            async with LocalDisk(db, REGISTRY):
                pass
    message = str(info.value)
    assert message.startswith(f"database {str(db)!r} is already open by another LocalDisk (pid ")
    assert "LocalDisk runs on one node: close the other process" in message
    async with LocalDisk(db, REGISTRY) as eco:  # the lock went with the first
        await eco.call(tally("t").add())


async def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    script = (
        "import asyncio, sys\n"
        "from pachytype import LocalDisk\n"
        "from tests.conformance.refs import REGISTRY\n"
        "async def main():\n"
        "    async with LocalDisk(sys.argv[1], REGISTRY):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    async with LocalDisk(db, REGISTRY):
        done = subprocess.run(
            [sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode != 0
    assert "StoreLockedError" in done.stderr
    assert "is already open by another LocalDisk" in done.stderr


async def test_idle_entities_leave_memory_and_come_back_from_disk(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY, cache_size=100) as eco:
        for _ in range(3):
            await eco.send(*(tally(f"m{i}").add(n=1) for i in range(1_000)))
            await eco.settle()
        runtime = eco._rt
        assert len(runtime._cache) <= 100
        assert [await eco.state(tally(f"m{i}")) for i in (0, 500, 999)] == [3, 3, 3]
        assert await eco.call(tally("m0").add(n=1)) == 4


async def test_old_state_versions_are_upgraded_on_load(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    alice = bank.account(AccountId("alice"))
    async with LocalDisk(db, BANK_V1) as eco:
        await eco.call(alice.deposit(amount=5))  # version 1 counts whole units
    assert rows(db, "SELECT state, version FROM entities") == [(b'{"balance":5}', 1)]
    async with LocalDisk(db, bank.REGISTRY) as eco:
        assert await eco.state(alice) == AccountState(balance=500)
        assert await eco.call(alice.deposit(amount=1)) == AccountState(balance=501)
    assert rows(db, "SELECT state, version FROM entities") == [(b'{"balance":501}', 2)]


async def test_an_entity_whose_state_cannot_be_loaded_is_held_not_overwritten(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("future").add(n=1))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entities SET version = 9 WHERE eid = 'future'")
    conn.commit()
    conn.close()
    async with LocalDisk(db, REGISTRY) as eco:
        with pytest.raises(StateVersionError, match="stored state has version 9"):
            await eco.call(tally("future").add(n=1))
        with pytest.raises(StateVersionError):
            await eco.state(tally("future"))
        assert await eco.call(tally("other").add(n=1)) == 1
    assert rows(db, "SELECT state, version FROM entities WHERE eid = 'future'") == [(b"1", 9)]
    # the message waits, stored and unconsumed
    unconsumed = (
        "SELECT count(*) FROM mailbox m JOIN entities e USING (etype, eid) "
        "WHERE eid = 'future' AND m.id > e.consumed"
    )
    assert rows(db, unconsumed) == [(1,)]
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entities SET version = 1 WHERE eid = 'future'")  # "the fixed code"
    conn.commit()
    conn.close()
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        assert await eco.state(tally("future")) == 2


async def test_a_message_is_applied_once_even_if_its_row_is_still_stored(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("once").add(n=1))
        await eco.send(tally("once").add(n=1))
        await eco.settle()
    # put back every consumed message, as if a crash had left them behind
    conn = sqlite3.connect(db)
    consumed = conn.execute("SELECT consumed FROM entities WHERE eid = 'once'").fetchone()[0]
    conn.execute(
        "INSERT OR IGNORE INTO mailbox VALUES (?, 'tally', 'once', ?)",
        (consumed, b'["Add",{"n":100}]'),
    )
    conn.commit()
    conn.close()
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        assert await eco.state(tally("once")) == 2


async def test_senders_wait_when_the_backlog_is_full_and_everything_arrives(
    tmp_path: Path,
) -> None:
    async with LocalDisk(
        tmp_path / "eco.db", REGISTRY, max_backlog=50, synchronous="NORMAL"
    ) as eco:

        async def sender(k: int) -> None:
            for _ in range(20):
                await eco.send(*(tally(f"b{k}").add(n=1) for _ in range(30)))

        await asyncio.wait_for(asyncio.gather(*(sender(k) for k in range(4))), 30)
        await eco.settle()
        assert [await eco.state(tally(f"b{k}")) for k in range(4)] == [600] * 4
        assert eco._rt._backlog == 0  # every queued message was counted out again


async def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    eco = LocalDisk(tmp_path / "eco.db", REGISTRY, synchronous="FAST")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"synchronous='FAST' .* use 'FULL'"):
        await eco.open()
    async with LocalDisk(tmp_path / "eco.db", REGISTRY):  # the lock was released
        pass


async def test_stored_mail_that_cannot_be_decoded_becomes_a_dead_letter(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("bad").add(n=1))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO mailbox VALUES (1000, 'tally', 'bad', ?)", (b'["Add",{"n":"x"}]',))
    conn.execute("INSERT INTO mailbox VALUES (1001, 'ghost', 'g', ?)", (b'["Boo",{}]',))
    conn.execute("INSERT INTO mailbox VALUES (1002, 'tally', 'bad', ?)", (b'["Add",{"n":2}]',))
    conn.commit()
    conn.close()
    dead: list[DeadLetter] = []
    for _ in range(2):  # a second opening does not make them dead letters again
        async with LocalDisk(db, REGISTRY) as eco:
            await eco.settle()
            assert await eco.state(tally("bad")) == 3
            dead = await eco.dead_letters()
            with pytest.raises(PachytypeError, match="holds a message that cannot be decoded"):
                await eco.redeliver(dead[0])
    dead.sort(key=lambda d: d.error_type)  # two entities: either may come first
    assert [(d.error_type, d.message) for d in dead] == [
        ("DecodeError", b'["Add",{"n":"x"}]'),
        ("UnknownEntityError", b'["Boo",{}]'),
    ]
    assert "cannot decode the message of entity 'tally'" in dead[0].error
    assert dead[1].to.entity_type == "ghost"


async def test_a_failing_store_fails_the_waiters_and_refuses_work_clearly(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("s").add(n=1))
        store = eco._rt.store
        assert isinstance(store, SqliteStore)
        store._c().close()  # the disk goes away, as far as SQLite can tell
        with pytest.raises(sqlite3.ProgrammingError):
            await eco.send(tally("s").add(n=1))
        with pytest.raises(PachytypeError, match=r"the LocalDisk store failed .* open it again"):
            await eco.call(tally("s").add(n=1))
    async with LocalDisk(db, REGISTRY) as eco:  # closing released the lock
        assert await eco.state(tally("s")) == 1


async def test_undecodable_mail_of_a_held_entity_does_not_skip_the_mail_before_it(
    tmp_path: Path,
) -> None:
    """A deploy removed a message class while the entity was held: the bad row
    becomes a dead letter in its place; the mail before and after it is
    delivered, in order, across any number of reopenings (issue 10, bug 1)."""
    db = tmp_path / "eco.db"

    def sql(query: str, *args: object) -> None:
        conn = sqlite3.connect(db)
        conn.execute(query, args)
        conn.commit()
        conn.close()

    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(refs.log(5).append(value=0))
    sql("UPDATE entities SET version = 9 WHERE etype = 'log'")  # held from now on
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(*(refs.log(5).append(value=v) for v in range(1, 11)))
        await eco.send(refs.log(5).append(value=99))
        await eco.send(*(refs.log(5).append(value=v) for v in range(11, 21)))
    sql(
        "UPDATE mailbox SET payload = ? WHERE payload = ?",
        b'["Gone",{}]',
        b'["Append",{"value":99}]',
    )
    for _ in range(2):  # reopened while still held: nothing may move
        async with LocalDisk(db, REGISTRY) as eco:
            await eco.settle()
    sql("UPDATE entities SET version = 1 WHERE etype = 'log'")  # "the fixed deploy"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        assert await eco.state(refs.log(5)) == tuple(range(21))
        (dead,) = await eco.dead_letters()
        assert dead.message == b'["Gone",{}]'
        assert dead.error_type == "DecodeError"
    async with LocalDisk(db, REGISTRY) as eco:  # and once only
        await eco.settle()
        assert await eco.state(refs.log(5)) == tuple(range(21))
        assert len(await eco.dead_letters()) == 1


async def test_a_store_failing_while_loading_a_state_fails_the_waiters_too(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(tally("s").add(n=1))
        store = eco._rt.store
        assert isinstance(store, SqliteStore)
        store._c().close()  # the disk goes away, as far as SQLite can tell
        # A new entity: its state must be read before its turn, and that read fails.
        with pytest.raises(sqlite3.ProgrammingError):
            await asyncio.wait_for(eco.send(tally("new").add(n=1)), 5)
        with pytest.raises(PachytypeError, match=r"the LocalDisk store failed"):
            await asyncio.wait_for(eco.settle(), 5)


async def test_a_held_entity_is_released_once_its_state_loads_again(tmp_path: Path) -> None:
    """Held entities are read again every `retry_held` seconds, as on Postgres:
    a repaired row releases the entity without reopening, mail in order."""
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(refs.log(3).append(value=0))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entities SET version = 9 WHERE etype = 'log'")
    conn.commit()
    async with LocalDisk(db, REGISTRY, retry_held=0.05) as eco:
        await eco.send(*(refs.log(3).append(value=v) for v in range(1, 6)))
        with pytest.raises(StateVersionError):
            await eco.state(refs.log(3))
        conn.execute("UPDATE entities SET version = 1 WHERE etype = 'log'")  # the repair
        conn.commit()
        for _ in range(1000):  # until the retry has read the repaired row
            try:
                await eco.state(refs.log(3))
                break
            except StateVersionError:
                await asyncio.sleep(0.01)
        await eco.settle()
        assert await eco.state(refs.log(3)) == (0, 1, 2, 3, 4, 5)
        assert await eco.call(refs.log(3).append(value=6)) == (0, 1, 2, 3, 4, 5, 6)
    conn.close()
