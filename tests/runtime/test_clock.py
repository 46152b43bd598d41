"""Clocks (issue 14): every ecosystem reads time and waits for delayed
messages through its `clock=`; a `ManualClock` fires a 30-day reminder when
the test advances it, durable timers included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pachytype import Ecosystem, InMemory, LocalDisk, ManualClock, Simulation
from tests.conformance import refs
from tests.conformance.refs import REGISTRY

DAY_MS = 24 * 3600 * 1000

OPENERS: dict[str, Callable[[Path, ManualClock], Ecosystem]] = {
    "inmemory": lambda _dir, clock: InMemory(REGISTRY, clock=clock),
    "localdisk": lambda d, clock: LocalDisk(d / "eco.db", REGISTRY, clock=clock),
    "simulation": lambda _dir, clock: Simulation(REGISTRY).ecosystem(clock=clock),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
async def test_a_thirty_day_reminder_fires_when_the_clock_says_so(
    kind: str, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    async with OPENERS[kind](tmp_path, clock) as eco:
        log = refs.log(1)
        await eco.call(refs.emitter("e").remind(to=log, value=7, delay_ms=30 * DAY_MS))
        await eco.settle()
        clock.advance(timedelta(days=29, hours=23))
        await eco.settle()
        assert await eco.state(log) == ()
        clock.advance(timedelta(hours=1))
        await eco.settle()
        assert await eco.state(log) == (7,)


async def test_a_stored_timer_keeps_its_due_time_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    db = tmp_path / "eco.db"
    async with LocalDisk(db, REGISTRY, clock=clock) as eco:
        await eco.call(refs.emitter("e").remind(to=refs.log(2), value=1, delay_ms=30 * DAY_MS))
    later = ManualClock(datetime(2030, 1, 20, tzinfo=UTC))  # 19 days on, not yet due
    async with LocalDisk(db, REGISTRY, clock=later) as eco:
        await eco.settle()
        assert await eco.state(refs.log(2)) == ()
        later.advance(timedelta(days=11))
        await eco.settle()
        assert await eco.state(refs.log(2)) == (1,)


def test_a_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    clock.advance(5)
    assert clock.now() == 105.0
    with pytest.raises(ValueError, match=r"a clock only moves forward: advance\(-1\)"):
        clock.advance(-1)


async def test_manual_timers_run_in_due_order_and_can_be_cancelled() -> None:
    clock = ManualClock(0.0)
    fired: list[str] = []
    clock.call_at(20, lambda: fired.append("b"))
    clock.call_at(10, lambda: fired.append("a"))
    clock.call_at(15, lambda: fired.append("never")).cancel()
    assert clock.pending == 2
    clock.advance(30)
    assert fired == ["a", "b"] and clock.pending == 0
