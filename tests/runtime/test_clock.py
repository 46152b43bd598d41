"""Clocks (issue 14): every ecosystem reads time and waits for delayed
messages through its `clock=`; a `ManualClock` fires a 30-day reminder when
the test advances it, durable timers included (LocalDisk and Postgres keep
the due time across a restart)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pachytype import Ecosystem, InMemory, LocalDisk, ManualClock, Postgres, Simulation
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres
from tests.conformance import refs
from tests.conformance.refs import REGISTRY

DAY_MS = 24 * 3600 * 1000

OPENERS: dict[str, Callable[[Path, ManualClock], Ecosystem]] = {
    "inmemory": lambda _dir, clock: InMemory(REGISTRY, clock=clock),
    "localdisk": lambda d, clock: LocalDisk(d / "eco.db", REGISTRY, clock=clock),
    "simulation": lambda _dir, clock: Simulation(REGISTRY).ecosystem(clock=clock),
}


Opener = Callable[[ManualClock], Ecosystem]


@pytest.fixture(params=[*sorted(OPENERS), "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same ecosystem (same file, same schema) with a given clock."""
    kind: str = request.param
    if kind != "postgres":
        yield lambda clock: OPENERS[kind](tmp_path, clock)
        return
    dsn, schema = require_postgres(), new_schema_name()
    try:
        yield lambda clock: Postgres(
            dsn, REGISTRY, schema=schema, partitions=4, poll_interval=0.1, clock=clock
        )
    finally:
        drop_schemas(dsn, [schema])


async def test_a_thirty_day_reminder_fires_when_the_clock_says_so(opener: Opener) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    async with opener(clock) as eco:
        log = refs.log(1)
        await eco.call(refs.emitter("e").remind(to=log, value=7, delay_ms=30 * DAY_MS))
        await eco.settle()
        clock.advance(timedelta(days=29, hours=23))
        await eco.settle()
        assert await eco.state(log) == ()
        clock.advance(timedelta(hours=1))
        await eco.settle()
        assert await eco.state(log) == (7,)


@pytest.mark.parametrize("opener", ["localdisk", "postgres"], indirect=True)
async def test_a_stored_timer_keeps_its_due_time_across_a_restart(opener: Opener) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    async with opener(clock) as eco:
        await eco.call(refs.emitter("e").remind(to=refs.log(2), value=1, delay_ms=30 * DAY_MS))
    later = ManualClock(datetime(2030, 1, 20, tzinfo=UTC))  # 19 days on, not yet due
    async with opener(later) as eco:
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
