"""The activation budget: interrupt an `activate` (or `init`) that runs too long.

Design note
-----------
Activations run on the event loop's thread, so one that loops forever
stops every entity of the process (and, on Postgres, its heartbeats and
leases). Every ecosystem therefore watches each activation:

* **The hot path writes, a thread reads.** `pachytype._core.turn` bumps
  `WATCH.seq` and sets `WATCH.inside` around each call of user code (three
  attribute writes). A daemon thread looks every quarter budget; when the
  same activation has been inside user code for a whole budget, it flags
  it and sends a signal to the main thread.
* **The signal decides, in the right thread.** The handler runs on the main
  thread between two bytecodes. It raises `ActivationTimeoutError` only if
  the flagged activation is still the one inside user code, so the error
  can only come out of `init`/`activate`, where the turn turns it into a
  failure like any other: the entity keeps its state, the message is a
  dead letter. A real signal (not `_thread.interrupt_main`) also cuts a
  `time.sleep` or a blocking read short.
* **Limits.** Signals reach only the main thread: an ecosystem opened on
  another thread's loop runs unwatched (logged once). A C extension that
  never returns to the interpreter cannot be interrupted. The check is
  coarse: an activation is interrupted after 1 to 1.25 budgets.

The default, 1 s, is thousands of times what a pure `activate` needs, and
well under the Postgres lease (5 s by default), so a looping message is
dead-lettered before its node loses its partitions.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Final

from pachytype._core.turn import WATCH
from pachytype._errors import ActivationTimeoutError

DEFAULT_BUDGET: Final = 1.0
"""Seconds an activation may run, unless its entity or ecosystem says otherwise."""

_SIGNAL: Final = getattr(signal, "SIGRTMIN", signal.SIGUSR2) + (
    7 if hasattr(signal, "SIGRTMIN") else 0
)
"""A signal nothing else uses: a real-time one on Linux, SIGUSR2 elsewhere."""

log = logging.getLogger("pachytype")

_lock = threading.Lock()
_watchdog: threading.Thread | None = None
_warned = False


def check_budget(budget: float, owner: str) -> float:
    """Validate an ecosystem's `activation_budget` (seconds, > 0)."""
    if not budget > 0:
        raise ValueError(
            f"activation_budget={budget!r} for {owner}: give the seconds an activate may "
            f"run, a number above 0 (default {DEFAULT_BUDGET:g})"
        )
    return budget


def watch_activations() -> bool:
    """Start watching activations of this process (idempotent); False when it
    cannot be done here (not on the main thread)."""
    global _watchdog, _warned
    if threading.current_thread() is not threading.main_thread():
        if not _warned:
            _warned = True
            log.warning(
                "pachytype: this ecosystem runs outside the main thread, so activations are "
                "not interrupted at their budget; run the event loop on the main thread "
                "(asyncio.run) to have runaway activations dead-lettered"
            )
        return False
    with _lock:
        if signal.getsignal(_SIGNAL) is not _interrupt:
            signal.signal(_SIGNAL, _interrupt)
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(
                target=_watch,
                args=(threading.main_thread().ident,),
                daemon=True,
                name="pachytype activation watchdog",
            )
            _watchdog.start()
    return True


def _watch(main: int | None) -> None:
    """The watchdog thread: flag an activation inside user code for a whole budget."""
    assert main is not None
    seen = -1
    since = 0.0
    while True:
        budget = WATCH.budget or DEFAULT_BUDGET
        time.sleep(min(budget / 4, 0.25))
        if not WATCH.inside or WATCH.budget <= 0:
            seen = -1
            continue
        seq = WATCH.seq
        now = time.monotonic()
        if seq != seen:
            seen, since = seq, now
            continue
        if now - since >= WATCH.budget and WATCH.flagged != seq:
            WATCH.flagged = seq
            signal.pthread_kill(main, _SIGNAL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """On the main thread: interrupt the flagged activation if it still runs."""
    watch = WATCH
    if watch.inside and watch.flagged == watch.seq:
        watch.inside = False
        raise ActivationTimeoutError(watch.entity, watch.id, watch.budget)
