"""Clocks: where an ecosystem reads the time and waits for delayed messages.

Every ecosystem takes `clock=`: the system clock by default, a
`ManualClock` in tests, so a 30-day reminder fires when the test says so::

    clock = ManualClock()
    async with LocalDisk(path, REGISTRY, clock=clock) as eco:
        await eco.send(refs.order(o).remind().after(timedelta(days=30)))
        clock.advance(timedelta(days=30))     # due now: delivered at once
        await eco.settle()

Durable timers are stored with their due time read from the clock, so a
manual clock moves them too. The simulation has a virtual clock of its own
(`Simulation.advance`); its ecosystem view takes a `clock=` like the others.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol


class Timer(Protocol):
    """A callback waiting for its time; `cancel()` makes it never run."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What an ecosystem needs of time: read it, and run a callback at a time."""

    def now(self) -> float:
        """The current time, in seconds since the Unix epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` (on the event loop) once `now()` reaches `when`."""
        ...


class SystemClock:
    """The machine's clock and the running event loop's timers (the default)."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)

    def __repr__(self) -> str:
        return "SystemClock()"


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _run(timer: _ManualTimer) -> None:
    if not timer.cancelled:
        timer.callback()


class ManualClock:
    """A clock that moves only when told: `advance(timedelta(days=30))` runs
    every callback due by then, in due order, before it returns.

    >>> clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))   # doctest: +SKIP

    `start`: the time it reads first (default: the system clock's now).
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        if start is None:
            start = time.time()
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(when, callback)
        if when <= self._now:
            # Due already: run on the loop soon, as the system clock would.
            asyncio.get_running_loop().call_soon(_run, timer)
            return timer
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def advance(self, by: timedelta | float) -> None:
        """Move time forward by `by` (seconds or a timedelta) and run what fell due."""
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError(f"a clock only moves forward: advance({by!r}) goes back in time")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()

    @property
    def pending(self) -> int:
        """Callbacks waiting for their time (cancelled ones not counted)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def __repr__(self) -> str:
        return f"ManualClock({datetime.fromtimestamp(self._now).isoformat()})"
