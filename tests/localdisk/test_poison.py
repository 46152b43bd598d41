"""A message that kills its process (issue 10): LocalDisk counts, durably and
before running it, each attempt at stored mail after a crash, runs mail that
was running at a crash alone, and dead-letters unrun a message that was
running `MAX_ATTEMPTS` times when its process died. Real processes, real
SIGKILLs; every acknowledged innocent message applied exactly once.

A child is `python -m tests.localdisk.test_poison DB first|reopen`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from pachytype import LocalDisk
from pachytype._runtime.durable import MAX_ATTEMPTS
from tests.poison import refs
from tests.poison.refs import REGISTRY

JOBS = 20
EACH = 10  # messages per job before the poison, and as many after it


async def _first(db: str) -> None:
    """Send innocent work around one killer; the send is acknowledged, then
    the process dies handling it."""
    async with LocalDisk(db, REGISTRY) as eco:
        before = [refs.job(f"j{i % JOBS}").work() for i in range(JOBS * EACH)]
        after = [refs.job(f"j{i % JOBS}").work() for i in range(JOBS * EACH)]
        await eco.send(*before, refs.job("bad").crash(), *after)
        print("acknowledged", len(before) + len(after) + 1, flush=True)
        await eco.settle()


async def _reopen(db: str) -> None:
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        states = [await eco.state(refs.job(f"j{i}")) for i in range(JOBS)]
        dead = await eco.dead_letters()
        print("states", sum(states), min(states), max(states), flush=True)
        print("dead", ",".join(d.error_type for d in dead), flush=True)
        if dead:
            print("error", dead[0].error, flush=True)


def _child(db: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.localdisk.test_poison", str(db), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_message_that_kills_its_process_is_isolated_then_dead_lettered(
    tmp_path: Path,
) -> None:
    db = tmp_path / "eco.db"
    first = _child(db, "first")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert f"acknowledged {2 * JOBS * EACH + 1}" in first.stdout
    crashes = 0
    while True:
        run = _child(db, "reopen")
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr
        crashes += 1
        assert crashes <= MAX_ATTEMPTS, "the killer was never isolated"
    # once among a chunk of suspects, then alone until MAX_ATTEMPTS: never again
    assert crashes == MAX_ATTEMPTS
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    # every innocent message applied exactly once: 2 * EACH per job
    assert lines["states"] == f"{2 * JOBS * EACH} {2 * EACH} {2 * EACH}"
    assert lines["dead"] == "PoisonMessageError"
    assert lines["error"].startswith(
        f"a message to entity 'job' (id 'bad') was being handled {MAX_ATTEMPTS} times when "
        f"its process died or its commit failed"
    )
    assert "then redeliver it" in lines["error"]
    again = _child(db, "reopen")  # and it stays settled
    assert again.returncode == 0 and again.stdout == run.stdout


if __name__ == "__main__":
    path, mode = sys.argv[1], sys.argv[2]
    asyncio.run(_first(path) if mode == "first" else _reopen(path))
