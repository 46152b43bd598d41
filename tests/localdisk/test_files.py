"""The database files: LocalDisk opens only a real SQLite database file (or
creates one), refuses with an error naming the path and saying what to do
when the path is a directory, a device, `:memory:`, a file that is not a
database, a database missing or emptied next to its write-ahead log, or a
log truncated below what its index recorded; and it stops acknowledging
commits once its files are deleted or replaced while open."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pachytype import LocalDisk, PachytypeError
from pachytype._errors import DatabaseFileError
from tests.conformance import refs
from tests.conformance.refs import REGISTRY

ROOT = Path(__file__).parent.parent.parent


async def _refused(path: str | Path) -> str:
    with pytest.raises(DatabaseFileError) as info:
        async with LocalDisk(path, REGISTRY):
            pass
    message = str(info.value)
    assert message.startswith(f"cannot use {str(path)!r} as a LocalDisk database: ")
    return message


async def _crash_image(tmp_path: Path, values: range) -> Path:
    """A copy of a database's files taken while it was open, as a crash leaves
    them: the .db, a -wal holding the commits, its -shm index."""
    live = tmp_path / "live"
    live.mkdir()
    async with LocalDisk(live / "eco.db", REGISTRY) as eco:
        for v in values:
            await eco.send(refs.log(v % 4).append(value=v))
        await eco.settle()
        image = tmp_path / "image"
        image.mkdir()
        for name in ("eco.db", "eco.db-wal", "eco.db-shm"):
            shutil.copyfile(live / name, image / name)
    return image / "eco.db"


async def _logged(db: Path) -> list[int]:
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        states = [await eco.state(refs.log(k)) for k in range(4)]
    return sorted(v for state in states for v in state)


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    message = await _refused(tmp_path)
    assert "it is a directory: give the path of the database file, e.g. " in message
    assert str(tmp_path / "eco.db") in message


async def test_a_path_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    message = await _refused(tmp_path / "nowhere" / "eco.db")
    assert f"its directory {str(tmp_path / 'nowhere')!r} does not exist: create it" in message
    assert not (tmp_path / "nowhere").exists()


async def test_memory_is_refused(tmp_path: Path) -> None:
    message = await _refused(":memory:")
    assert "LocalDisk stores on disk" in message
    assert "use InMemory" in message


async def test_a_device_and_a_fifo_are_refused(tmp_path: Path) -> None:
    assert "it is not a regular file" in await _refused("/dev/null")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "it is not a regular file" in await _refused(fifo)


async def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my shopping list: eggs, milk, a much longer list of things\n" * 3)
    before = notes.read_bytes()
    message = await _refused(notes)
    assert "it is not an SQLite database (it starts with b'my shopping list')" in message
    assert "check the path" in message
    assert notes.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_a_new_path_and_an_empty_file_become_a_database(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    for name in ("new.db", "empty.db"):
        async with LocalDisk(tmp_path / name, REGISTRY) as eco:
            await eco.call(refs.log(1).append(value=1))
        assert await _logged(tmp_path / name) == [1]


async def test_a_database_missing_or_emptied_next_to_its_log_is_refused(tmp_path: Path) -> None:
    db = await _crash_image(tmp_path, range(50))
    wal = db.with_name("eco.db-wal")
    wal_bytes = wal.read_bytes()
    saved = db.read_bytes()
    db.write_bytes(b"")  # emptied
    message = await _refused(db)
    assert f"the database file is empty but its write-ahead log {str(wal)!r} exists" in message
    assert "Restore the database file (with its -wal and -shm" in message
    db.unlink()  # deleted
    message = await _refused(db)
    assert "the database file is missing but its write-ahead log" in message
    assert not db.exists() and wal.read_bytes() == wal_bytes  # nothing created or changed
    db.write_bytes(saved)  # restored: everything is there
    assert await _logged(db) == list(range(50))


async def test_a_truncated_log_is_refused_and_can_be_accepted_by_removing_its_index(
    tmp_path: Path,
) -> None:
    db = await _crash_image(tmp_path, range(200))
    wal, shm = db.with_name("eco.db-wal"), db.with_name("eco.db-shm")
    size = wal.stat().st_size
    with open(wal, "r+b") as f:
        f.truncate(size // 2)  # a copy cut short, a disk tool's "repair"
    message = await _refused(db)
    assert f"its write-ahead log {str(wal)!r} is truncated: its index records" in message
    assert f"delete {str(shm)!r} and open again" in message
    assert wal.stat().st_size == size // 2  # left as it was
    shm.unlink()  # the operator accepts the loss
    survived = await _logged(db)
    assert len(survived) < 200
    assert survived == list(range(len(survived)))  # a prefix: commits are in order


async def test_an_intact_log_left_by_a_crash_opens_with_everything(tmp_path: Path) -> None:
    db = await _crash_image(tmp_path, range(200))
    assert db.with_name("eco.db-wal").stat().st_size > 0
    assert await _logged(db) == list(range(200))


async def test_a_database_deleted_while_open_stops_acknowledging_and_keeps_its_log(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(*(refs.log(1).append(value=v) for v in range(10)))
        db.unlink()
        with pytest.raises(DatabaseFileError) as info:
            await eco.send(refs.log(1).append(value=10))
        with pytest.raises(PachytypeError, match=r"the LocalDisk store failed"):
            await eco.settle()
    message = str(info.value)
    assert "the database file at this path was deleted while this LocalDisk had it open" in message
    assert "nothing more will be acknowledged (the last commit was not)" in message
    assert "the -wal and -shm it used stay next to the path" in message
    # The log is left where it was: opening the path says the database is missing.
    assert "the database file is missing but its write-ahead log" in await _refused(db)


async def _backup(path: Path, values: range) -> None:
    async with LocalDisk(path, REGISTRY) as eco:
        await eco.send(*(refs.log(1).append(value=v) for v in values))
        await eco.settle()


async def test_a_database_replaced_while_open_is_never_mixed_with_the_old_log(
    tmp_path: Path,
) -> None:
    db, backup = tmp_path / "eco.db", tmp_path / "backup.db"
    await _backup(backup, range(100, 105))
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(*(refs.log(1).append(value=v) for v in range(10)))
        os.replace(backup, db)  # an operator restores a backup while it runs
        with pytest.raises(DatabaseFileError) as info:
            await eco.send(refs.log(1).append(value=10))
        # A second ecosystem on the path now would share the old -wal and -shm.
        message = await _refused(db)
        assert f"another process (pid {os.getpid()}, this process) still writes" in message
    assert "the database file at this path was replaced while this LocalDisk" in str(info.value)
    pid = os.getpid()
    assert (tmp_path / f"eco.db-wal.orphaned-{pid}").exists()
    assert await _logged(db) == [100, 101, 102, 103, 104]  # the backup, only


async def test_a_log_deleted_while_open_stops_acknowledging_and_closing_keeps_it_all(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(*(refs.log(1).append(value=v) for v in range(10)))
        db.with_name("eco.db-wal").unlink()
        with pytest.raises(DatabaseFileError) as info:
            await eco.send(refs.log(1).append(value=10))
    assert f"its write-ahead log {str(db) + '-wal'!r} was deleted or replaced" in str(info.value)
    assert (await _logged(db))[:10] == list(range(10))


def test_a_second_process_on_a_replaced_database_waits_for_the_old_one(tmp_path: Path) -> None:
    db, backup = tmp_path / "eco.db", tmp_path / "backup.db"
    asyncio.run(_backup(backup, range(100, 105)))
    go = tmp_path / "go"
    old = subprocess.Popen(
        [sys.executable, "-m", "tests.localdisk.test_files", str(db), str(go)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert old.stdout is not None
        assert old.stdout.readline() == "acknowledged 10\n"
        os.replace(backup, db)
        second = subprocess.run(
            [sys.executable, "-m", "tests.localdisk.test_files", str(db)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.stdout.startswith(
            f"refused cannot use {str(db)!r} as a LocalDisk database: another process "
            f"(pid {old.pid}) still writes through the database file that was at this path"
        ), second.stdout + second.stderr
        go.touch()
        out, err = old.communicate(timeout=60)
        assert old.returncode == 0, err
        assert out.startswith("refused "), out
        assert "the database file at this path was replaced while this LocalDisk" in out
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
    assert asyncio.run(_logged(db)) == [100, 101, 102, 103, 104]  # the backup, unmixed


async def _old_writer(db: str, go: str) -> None:
    """The process whose database gets replaced: acknowledges 10, waits, tries once more."""
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.send(*(refs.log(1).append(value=v) for v in range(10)))
        print("acknowledged 10", flush=True)
        while not os.path.exists(go):
            await asyncio.sleep(0.01)
        try:
            await eco.send(refs.log(1).append(value=10))
            print("acknowledged 11", flush=True)
        except PachytypeError as error:  # DatabaseFileError, or the store failed with it
            print(f"refused {error}", flush=True)


async def _try_open(db: str) -> None:
    try:
        async with LocalDisk(db, REGISTRY):
            print("opened", flush=True)
    except DatabaseFileError as error:
        print(f"refused {error}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        asyncio.run(_old_writer(sys.argv[1], sys.argv[2]))
    else:
        asyncio.run(_try_open(sys.argv[1]))
