"""One writer per database file, whatever the path spelling: a second process
(or a second ecosystem in this one) that reaches the file through a symlink,
a hard link, a `..` path or a relative path is refused with
`StoreLockedError` naming the path, and there is no side lock file whose
deletion would let it in. Two processes racing to write: every acknowledged
message is applied exactly once.

Run as a script (`python -m tests.localdisk.test_lock MODE ...`) it is the
child process these tests start:
* `spellings DB HOLDER_PID PATH...`: try to open each PATH, print one line
  per path (`refused <message>` or `opened`).
* `write DB JOURNAL FIRST COUNT GO`: open DB, journal `ready` (or `refused`),
  wait for the file GO, send COUNT values from FIRST in batches, journal each
  acknowledged batch.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pachytype import LocalDisk, StoreLockedError
from tests.conformance import refs
from tests.conformance.refs import REGISTRY

LOGS = 8
BATCH = 50
ROOT = Path(__file__).parent.parent.parent


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.localdisk.test_lock", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _posix_locks_of(pid: int, path: Path) -> int:
    """How many POSIX (fcntl) locks `pid` holds on `path`'s inode (/proc/locks)."""
    info = os.stat(path)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    count = 0
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            continue
        if fields[1] == "POSIX" and fields[4] == str(pid) and fields[5] == inode:
            count += 1
    return count


def _spellings(tmp_path: Path, db: Path) -> list[Path]:
    (tmp_path / "sub").mkdir()
    (tmp_path / "via-symlink.db").symlink_to(db)
    os.link(db, tmp_path / "via-hardlink.db")
    return [
        tmp_path / "via-symlink.db",
        tmp_path / "via-hardlink.db",
        tmp_path / "sub" / ".." / db.name,
        Path(os.path.relpath(db, ROOT)),
        db,
    ]


async def test_a_second_process_is_refused_through_every_spelling_of_the_path(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(refs.log(1).append(value=1))
        paths = _spellings(tmp_path, db)
        # No side lock file an operator could remove as "stale": the lock is on
        # the database file itself.
        assert sorted(p.name for p in tmp_path.iterdir() if not p.is_dir()) == [
            "eco.db",
            "eco.db-shm",
            "eco.db-wal",
            "via-hardlink.db",
            "via-symlink.db",
        ]
        child = _child("spellings", str(db), str(os.getpid()), *map(str, paths))
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == len(paths)
        for path, line in zip(paths, lines, strict=True):
            assert line.startswith(f"refused database {str(path)!r} is already open"), line
            assert f"(pid {os.getpid()}" in line
            assert "close the other process" in line
        await eco.call(refs.log(1).append(value=2))  # the owner carries on
    async with LocalDisk(tmp_path / "via-symlink.db", REGISTRY) as eco:
        assert await eco.state(refs.log(1)) == (1, 2)


async def test_a_second_ecosystem_in_this_process_is_refused_and_the_first_keeps_its_locks(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.call(refs.log(1).append(value=1))
        held = _posix_locks_of(os.getpid(), db)
        assert held >= 1  # SQLite's own (WAL mode keeps a shared lock on the file)
        for path in _spellings(tmp_path, db):
            with pytest.raises(StoreLockedError) as info:
                async with LocalDisk(path, REGISTRY):
                    pass
            assert str(info.value).startswith(f"database {str(path)!r} is already open")
            assert "this process" in str(info.value)
            # Refusing must not close a descriptor of the file: that would drop
            # SQLite's fcntl locks of the first ecosystem.
            assert _posix_locks_of(os.getpid(), db) == held
        await eco.call(refs.log(1).append(value=2))
    async with LocalDisk(db, REGISTRY) as eco:
        assert await eco.state(refs.log(1)) == (1, 2)


def _wait_for_line(journal: Path, child: subprocess.Popen[str], words: tuple[str, ...]) -> str:
    deadline = time.monotonic() + 60
    while True:
        text = journal.read_text() if journal.exists() else ""
        for line in text.splitlines():
            if line.split(" ", 1)[0] in words:
                return line
        if child.poll() is not None:
            raise AssertionError(f"the writer died: {child.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the writer never opened the database"
        time.sleep(0.01)


def _acknowledged(journal: Path) -> set[int]:
    acked: set[int] = set()
    for line in journal.read_text().splitlines():
        parts = line.split()
        if parts[0] == "ack":
            acked.update(range(int(parts[1]), int(parts[2])))
    return acked


@pytest.mark.parametrize("spelling", ["symlink", "hardlink", "dotdot"])
async def test_two_writers_racing_lose_no_acknowledged_message(
    tmp_path: Path, spelling: str
) -> None:
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY):
        pass  # the file exists, so it can be linked to
    other = {
        "symlink": tmp_path / "link.db",
        "hardlink": tmp_path / "hard.db",
        "dotdot": tmp_path / "sub" / ".." / "eco.db",
    }[spelling]
    if spelling == "symlink":
        other.symlink_to(db)
    elif spelling == "hardlink":
        os.link(db, other)
    else:
        (tmp_path / "sub").mkdir()
    count = 2_000
    go = tmp_path / "go"
    journals = [tmp_path / "a.txt", tmp_path / "b.txt"]
    children = [
        _child("write", str(path), str(journal), str(first), str(count), str(go))
        for path, journal, first in zip((db, other), journals, (0, count), strict=True)
    ]
    try:
        opened = [
            _wait_for_line(j, c, ("ready", "refused"))
            for j, c in zip(journals, children, strict=True)
        ]
        go.touch()
        for c in children:
            _, err = c.communicate(timeout=120)
            assert c.returncode == 0, err
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    assert sorted(line.split(" ", 1)[0] for line in opened) == ["ready", "refused"]
    acked = _acknowledged(journals[0]) | _acknowledged(journals[1])
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        applied = [v for k in range(LOGS) for v in await eco.state(refs.log(k))]
    lost = acked - set(applied)
    doubled = len(applied) - len(set(applied))
    print(
        f"\ntwo writers via {spelling}: {len(acked)} acknowledged, {len(applied)} applied, "
        f"lost {len(lost)}, doubled {doubled}"
    )
    assert len(acked) == count
    assert lost == set()
    assert doubled == 0
    assert set(applied) == acked
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


async def _spellings_child(paths: list[str]) -> None:
    for path in paths:
        try:
            async with LocalDisk(path, REGISTRY):
                print("opened", flush=True)
        except StoreLockedError as error:
            print(f"refused {error}", flush=True)


async def _write_child(db: str, journal: str, first: int, count: int, go: str) -> None:
    with open(journal, "a", buffering=1) as out:
        try:
            eco = LocalDisk(db, REGISTRY)
            await eco.open()
        except StoreLockedError as error:
            out.write(f"refused {error}\n")
            return
        try:
            out.write("ready\n")
            while not os.path.exists(go):
                await asyncio.sleep(0.005)
            for at in range(first, first + count, BATCH):
                values = range(at, min(at + BATCH, first + count))
                await eco.send(*(refs.log(v % LOGS).append(value=v) for v in values))
                out.write(f"ack {values.start} {values.stop}\n")
        finally:
            await eco.close()


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "spellings":
        asyncio.run(_spellings_child(rest[2:]))
    elif mode == "write":
        db_path, journal_path, first_value, how_many, go_path = rest
        asyncio.run(_write_child(db_path, journal_path, int(first_value), int(how_many), go_path))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
