"""A dead letter's recent messages survive a kill on LocalDisk: a running
entity's recent messages are written at most `recent_every` seconds after
it ran them (an idle runtime included), and with every commit at
`recent_every=0`. Real child processes, real SIGKILLs."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pachytype import ActivationError, LocalDisk
from tests.conformance import refs
from tests.conformance.entities import Add, Fail, TallyId
from tests.conformance.refs import REGISTRY

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import asyncio, sys
from pachytype import LocalDisk
from tests.conformance import refs
from tests.conformance.entities import TallyId

async def main() -> None:
    async with LocalDisk(sys.argv[1], refs.REGISTRY, recent_every=float(sys.argv[2])) as eco:
        await eco.call(refs.tally(TallyId("dl")).add(n=1))
        await eco.call(refs.tally(TallyId("dl")).add(n=2))
        print("ran", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _run_then(db: Path, recent_every: float) -> subprocess.Popen[bytes]:
    """A child that ran add(1), add(2) on `db` (both committed) and waits."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), str(recent_every)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ran\n", "the child died before running its messages"
    return child


def _recent_written(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return bool(
            conn.execute("SELECT count(*) FROM entities WHERE recent IS NOT NULL").fetchone()[0]
        )
    finally:
        conn.close()


async def _dead_letter_recent(db: Path) -> tuple[object, ...]:
    async with LocalDisk(db, REGISTRY) as eco:
        with pytest.raises(ActivationError):
            await eco.call(refs.tally(TallyId("dl")).fail(reason="after the kill"))
        (dead,) = await eco.dead_letters()
        assert await eco.state(refs.tally(TallyId("dl"))) == 3
        return dead.recent


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL


async def test_an_idle_runtime_writes_recent_messages_within_recent_every(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    child = _run_then(db, recent_every=0.3)
    try:
        deadline = time.monotonic() + 10
        while not _recent_written(db):  # readiness: the row the flush writes
            assert time.monotonic() < deadline, "recent messages not written within 10 s"
            await asyncio.sleep(0.02)
    finally:
        _kill(child)
    assert await _dead_letter_recent(db) == (Add(1), Add(2), Fail("after the kill"))


async def test_recent_every_0_writes_them_with_the_commit_itself(tmp_path: Path) -> None:
    db = tmp_path / "eco.db"
    _kill(_run_then(db, recent_every=0))  # killed as soon as both calls returned
    assert await _dead_letter_recent(db) == (Add(1), Add(2), Fail("after the kill"))


async def test_within_the_window_a_kill_loses_them(tmp_path: Path) -> None:
    """The bound is real: what ran less than `recent_every` before a kill is
    not in the dead letter's context (the failing message always is)."""
    db = tmp_path / "eco.db"
    _kill(_run_then(db, recent_every=3600))
    assert await _dead_letter_recent(db) == (Fail("after the kill"),)


def test_a_negative_recent_every_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"recent_every=-0.5 for LocalDisk\(.*\): give the most"):
        LocalDisk(tmp_path / "eco.db", REGISTRY, recent_every=-0.5)
