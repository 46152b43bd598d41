"""Disk full, for real: LocalDisk on a small tmpfs (mounted in a private user
and mount namespace, `unshare -rm`, so no root is needed where user
namespaces are allowed) runs senders and callers until the file system is
full. Every waiter gets the error (none hangs), `settle()` raises instead of
spinning, later calls are refused clearly, `close()` works; once space is
freed, reopening delivers every acknowledged message exactly once.

Run as a script it is one of the processes of the scenario:
* `scenario DIR OUT`: inside the namespace (DIR is the tmpfs): fill most of
  it, run `write`, free the space, run `verify`; write the findings to OUT.
* `write DB JOURNAL RESULT` and `verify DB JOURNAL RESULT`: the writer and
  the reopening process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pachytype import LocalDisk, PachytypeError
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY

ROOT = Path(__file__).parent.parent.parent
TMPFS_SIZE = "3m"
FILLER = 1024 * 1024
SENDERS = 6
LOGS = 8
BATCH = 40
SETTLE_LIMIT = 5.0
"""Seconds `settle()` gets to raise after the failure (it used to spin forever)."""


def _namespaces_work(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = where / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe}"],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def test_disk_full_fails_every_waiter_and_reopening_loses_nothing(tmp_path: Path) -> None:
    if not _namespaces_work(tmp_path):
        pytest.skip("cannot mount a small tmpfs here (`unshare -rm` with mount is not allowed)")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = tmp_path / "findings.json"
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {disk} && "
        f"exec {sys.executable} -m tests.localdisk.test_disk_full scenario {disk} {out}"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    written, verified = found["write"], found["verify"]
    print(
        f"\ndisk full: {written['acknowledged']} acknowledged before the disk filled "
        f"(first error: {written['first_error']}); waiters failed {written['failed']}, "
        f"hung {written['hung']}; settle {written['settle']} in "
        f"{written['settle_seconds']:.3f}s; after freeing space: reopened and settled in "
        f"{verified['recover_seconds']:.2f}s, {verified['applied']} applied, "
        f"lost {verified['lost']}, doubled {verified['doubled']}, calls "
        f"{written['calls_acknowledged']} acknowledged / {verified['tally']} applied"
    )
    assert "full" in written["first_error"]
    assert written["acknowledged"] > 0
    assert written["hung"] == 0
    assert written["failed"] == SENDERS + 1  # every sender and the caller got an error
    assert written["settle"].startswith("raised PachytypeError: the LocalDisk store failed")
    assert written["later_call"].startswith("PachytypeError: the LocalDisk store failed")
    assert written["closed"]
    assert verified["lost"] == 0
    assert verified["doubled"] == 0
    assert verified["invented"] == 0
    assert written["calls_acknowledged"] <= verified["tally"] <= written["calls_tried"]
    assert verified["integrity"] == "ok"


# -- the processes ---------------------------------------------------------------


def _scenario(disk: Path, out: Path) -> None:
    db, journal = disk / "eco.db", out.with_name("journal.txt")
    filler = disk / "filler"
    # Most of the space goes to a file that is removed later: "free some space".
    filler.write_bytes(os.urandom(FILLER))
    findings: dict[str, Any] = {}
    for mode in ("write", "verify"):
        result = out.with_name(f"{mode}.json")
        command = [sys.executable, "-m", "tests.localdisk.test_disk_full", mode, str(db)]
        child = subprocess.run(
            [*command, str(journal), str(result)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=200,
        )
        if child.returncode != 0:
            raise SystemExit(f"{mode} failed: {child.stderr[-3000:]}")
        findings[mode] = json.loads(result.read_text())
        if mode == "write":
            filler.unlink()
    out.write_text(json.dumps(findings))


async def _write(db: str, journal_path: str, result_path: str) -> None:
    report: dict[str, Any] = {"failed": 0, "hung": 0, "first_error": None}
    calls = {"tried": 0, "acked": 0}
    with open(journal_path, "w", buffering=1) as journal:
        eco = LocalDisk(db, REGISTRY)
        await eco.open()

        async def sender(k: int) -> None:
            v = k
            while True:
                values = range(v, v + BATCH * SENDERS, SENDERS)
                journal.write(f"try {' '.join(map(str, values))}\n")
                await eco.send(*(refs.log(x % LOGS).append(value=x) for x in values))
                journal.write(f"ack {' '.join(map(str, values))}\n")
                v = values.stop

        async def caller() -> None:
            while True:
                calls["tried"] += 1
                await eco.call(refs.tally(TallyId("t")).add(n=1))
                calls["acked"] += 1

        tasks = [asyncio.create_task(sender(k)) for k in range(SENDERS)]
        tasks.append(asyncio.create_task(caller()))
        done, waiting = await asyncio.wait(tasks, timeout=120)
        report["hung"] = len(waiting)
        for task in done:
            error = task.exception()
            report["failed"] += error is not None
            if error is not None and report["first_error"] is None:
                report["first_error"] = f"{type(error).__name__}: {error}"
        for task in waiting:
            task.cancel()
        started = time.monotonic()
        try:
            await asyncio.wait_for(eco.settle(), SETTLE_LIMIT)
            report["settle"] = "returned"
        except TimeoutError:
            report["settle"] = f"still spinning after {SETTLE_LIMIT}s"
        except PachytypeError as error:
            report["settle"] = f"raised {type(error).__name__}: {error}"
        report["settle_seconds"] = time.monotonic() - started
        try:
            await eco.call(refs.tally(TallyId("t")).add(n=1))
            report["later_call"] = "accepted"
        except PachytypeError as error:
            report["later_call"] = f"{type(error).__name__}: {error}"
        await eco.close()
        report["closed"] = True
    report["acknowledged"] = len(_acknowledged(Path(journal_path)))
    report["calls_tried"], report["calls_acknowledged"] = calls["tried"], calls["acked"]
    Path(result_path).write_text(json.dumps(report))


def _acknowledged(journal: Path, kind: str = "ack") -> set[int]:
    return {
        int(v)
        for line in journal.read_text().splitlines()
        if line.startswith(kind)
        for v in line.split()[1:]
    }


async def _verify(db: str, journal_path: str, result_path: str) -> None:
    acked = _acknowledged(Path(journal_path))
    tried = _acknowledged(Path(journal_path), "try")
    started = time.monotonic()
    async with LocalDisk(db, REGISTRY) as eco:
        await eco.settle()
        recovered = time.monotonic() - started
        applied = [v for k in range(LOGS) for v in await eco.state(refs.log(k))]
        tally = await eco.state(refs.tally(TallyId("t")))
    conn = sqlite3.connect(db)
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    report = {
        "recover_seconds": recovered,
        "applied": len(applied),
        "lost": len(acked - set(applied)),
        "doubled": len(applied) - len(set(applied)),
        "invented": len(set(applied) - tried),
        "tally": tally,
        "integrity": integrity,
    }
    Path(result_path).write_text(json.dumps(report))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "scenario":
        _scenario(Path(args[0]), Path(args[1]))
    elif mode == "write":
        asyncio.run(_write(*args))
    elif mode == "verify":
        asyncio.run(_verify(*args))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
