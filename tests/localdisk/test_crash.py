"""Crash test: a child process runs a workload on LocalDisk and is killed with
SIGKILL at random moments, many times; after each kill the next child
reopens the database and carries on. At the end the database must hold
every acknowledged message's effect exactly once, in send order, and pass
`PRAGMA integrity_check`.

The workload (one child = one run of `python -m tests.localdisk.test_crash`):
* outside sends `log(v % LOGS).append(value=v)` for increasing v, in batches;
* `emitter(e).emit(to=log(RELAY + e), values=(v,))`: entity-to-entity mail;
* `emitter(r).remind(to=log(DELAYED + e), value=v, delay_ms=0..300)`: delayed
  entity-to-entity mail, often pending at a kill;
* `call`s of `tally("t").add(n=1)`.
The child writes `try`/`ack` lines to a file before and after each operation;
`ack` lines are the acknowledged operations. CRASH_KILLS sets the number of
kills (default 24).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from attrs import define, field

from pachytype import LocalDisk
from tests.conformance import refs
from tests.conformance.entities import TallyId
from tests.conformance.refs import REGISTRY

LOGS = 16
RELAY = 1_000
DELAYED = 2_000
EMITTERS = 4
KILLS = int(os.environ.get("CRASH_KILLS", "24"))


async def _work(db: str, journal: str, start: int, seed: int) -> None:
    rng = random.Random(seed)
    v = start
    with open(journal, "a", buffering=1) as out:
        async with LocalDisk(db, REGISTRY) as eco:
            out.write("ready\n")
            while True:
                kind = rng.random()
                if kind < 0.7:
                    values = range(v, v + rng.randint(1, 40))
                    out.write(f"try send {values.start} {values.stop}\n")
                    await eco.send(*(refs.log(x % LOGS).append(value=x) for x in values))
                    out.write(f"ack send {values.start} {values.stop}\n")
                    v = values.stop
                elif kind < 0.8:
                    e = v % EMITTERS
                    out.write(f"try remind {v} {e}\n")
                    ms = rng.randint(0, 300)
                    remind = refs.emitter(f"r{e}").remind(
                        to=refs.log(DELAYED + e), value=v, delay_ms=ms
                    )
                    await eco.send(remind)
                    out.write(f"ack remind {v} {e}\n")
                    v += 1
                elif kind < 0.9:
                    e = v % EMITTERS
                    out.write(f"try emit {v} {e}\n")
                    await eco.send(refs.emitter(f"e{e}").emit(to=refs.log(RELAY + e), values=(v,)))
                    out.write(f"ack emit {v} {e}\n")
                    v += 1
                else:
                    out.write("try call\n")
                    await eco.call(refs.tally(TallyId("t")).add(n=1))
                    out.write("ack call\n")


@define
class Ledger:
    """What the children attempted and what was acknowledged to them."""

    tried_values: set[int] = field(factory=set)
    acked_values: set[int] = field(factory=set)
    tried_emits: dict[int, int] = field(factory=dict)  # value -> emitter
    acked_emits: set[int] = field(factory=set)
    tried_reminds: dict[int, int] = field(factory=dict)  # value -> emitter
    acked_reminds: set[int] = field(factory=set)
    tried_calls: int = 0
    acked_calls: int = 0
    operations: int = 0

    def read(self, journal: Path) -> int:
        """Add a journal's lines; returns the next free value."""
        top = 0
        for line in journal.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            tried = parts[0] == "try"
            self.operations += not tried
            match parts[1:]:
                case ["send", a, b]:
                    span = range(int(a), int(b))
                    (self.tried_values if tried else self.acked_values).update(span)
                    top = max(top, span.stop)
                case ["emit", a, e]:
                    if tried:
                        self.tried_emits[int(a)] = int(e)
                    else:
                        self.acked_emits.add(int(a))
                    top = max(top, int(a) + 1)
                case ["remind", a, e]:
                    if tried:
                        self.tried_reminds[int(a)] = int(e)
                    else:
                        self.acked_reminds.add(int(a))
                    top = max(top, int(a) + 1)
                case ["call"]:
                    if tried:
                        self.tried_calls += 1
                    else:
                        self.acked_calls += 1
                case _:
                    pass
        return top


def _run_child(db: Path, journal: Path, start: int, seed: int, rng: random.Random) -> None:
    journal.write_text("")
    args = [str(db), str(journal), str(start), str(seed)]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.localdisk.test_crash", *args],
        cwd=Path(__file__).parent.parent.parent,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while "ready" not in journal.read_text():
        if child.poll() is not None:
            raise AssertionError(f"the worker died: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the worker never opened the database"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.02, 0.4))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    db = tmp_path / "crash.db"
    ledger = Ledger()
    start = 0
    started = time.monotonic()
    for kill in range(KILLS):
        journal = tmp_path / f"journal-{kill}.txt"
        _run_child(db, journal, start, rng.randrange(1 << 30), rng)
        start = max(start, ledger.read(journal)) + 1
        if kill % 8 == 7:
            assert _integrity(db) == "ok"

    logs, emitted, relayed, tally, delayed, reminded = asyncio.run(_final_states(db))
    found = [v for state in logs.values() for v in state]
    lost = ledger.acked_values - set(found)
    relayed_values = [v for state in relayed.values() for v in state]
    delayed_values = [v for state in delayed.values() for v in state]
    every = [*found, *relayed_values, *delayed_values]
    duplicated = len(every) - len(set(every))
    lost_elsewhere = (ledger.acked_reminds - set(delayed_values)) | (
        ledger.acked_emits - set(relayed_values)
    )
    print(
        f"\ncrash test: {KILLS} SIGKILLs in {time.monotonic() - started:.1f}s, "
        f"{ledger.operations} acknowledged operations, {len(ledger.acked_values)} acknowledged "
        f"sends ({len(found)} delivered), {len(ledger.acked_emits)} acknowledged relays "
        f"({len(relayed_values)} delivered), {len(ledger.acked_reminds)} acknowledged "
        f"delayed messages ({len(delayed_values)} delivered), "
        f"{ledger.acked_calls} acknowledged calls; "
        f"lost {len(lost) + len(lost_elsewhere)}, duplicated {duplicated}"
    )
    assert KILLS >= 1 and ledger.operations > KILLS
    # no acknowledged message lost, nothing applied twice, nothing invented
    assert lost == set()
    assert duplicated == 0
    assert set(found) <= ledger.tried_values
    # per sender -> receiver order (one sender: the children, one after the other)
    for k, state in logs.items():
        assert list(state) == sorted(state), f"log {k} out of order"
        assert all(v % LOGS == k for v in state)
    # entity-to-entity mail: each emit handled once, each relayed message delivered once
    assert ledger.acked_emits <= set(relayed_values) <= set(ledger.tried_emits)
    assert len(relayed_values) == len(set(relayed_values))
    for e in range(EMITTERS):
        assert emitted[e] == len(relayed[RELAY + e])
        assert all(ledger.tried_emits[v] == e for v in relayed[RELAY + e])
    # delayed messages: each acknowledged reminder fires once, across the kills
    assert ledger.acked_reminds <= set(delayed_values) <= set(ledger.tried_reminds)
    assert len(delayed_values) == len(set(delayed_values))
    for e in range(EMITTERS):
        assert reminded[e] == len(delayed[DELAYED + e])
    # calls: every acknowledged one counted, none counted twice
    assert ledger.acked_calls <= tally <= ledger.tried_calls
    assert _integrity(db) == "ok"


async def _final_states(
    db: Path,
) -> tuple[
    dict[int, tuple[int, ...]],
    dict[int, int],
    dict[int, tuple[int, ...]],
    int,
    dict[int, tuple[int, ...]],
    dict[int, int],
]:
    async with LocalDisk(db, REGISTRY) as eco:
        await asyncio.sleep(0.4)  # the last reminders come due (delays are <= 300 ms)
        await eco.settle()
        logs = {k: await eco.state(refs.log(k)) for k in range(LOGS)}
        emitted = {e: await eco.state(refs.emitter(f"e{e}")) for e in range(EMITTERS)}
        relayed = {RELAY + e: await eco.state(refs.log(RELAY + e)) for e in range(EMITTERS)}
        delayed = {DELAYED + e: await eco.state(refs.log(DELAYED + e)) for e in range(EMITTERS)}
        reminded = {e: await eco.state(refs.emitter(f"r{e}")) for e in range(EMITTERS)}
        tally = await eco.state(refs.tally(TallyId("t")))
    return logs, emitted, relayed, tally, delayed, reminded


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result
    finally:
        conn.close()


if __name__ == "__main__":
    database, journal_path, first, worker_seed = sys.argv[1:5]
    asyncio.run(_work(database, journal_path, int(first), int(worker_seed)))
