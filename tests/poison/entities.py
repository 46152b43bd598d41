"""A worker whose `activate` can loop forever or block, to test the activation budget."""

from __future__ import annotations

import os
import signal
import time
from typing import ClassVar

from attrs import frozen

from pachytype import Activation, Entity


@frozen
class Work:
    """Count one unit of work."""


@frozen
class Spin:
    """Loop forever (a bug in `activate`)."""


@frozen
class Block:
    """Block the thread for `seconds` (I/O where none belongs)."""

    seconds: float


@frozen
class Crash:
    """Kill the whole process (a segfault, an OOM kill: nothing to interrupt)."""


JobMsg = Work | Spin | Block | Crash


class Job(Entity[str, JobMsg, int]):
    """Counts work; misbehaves on request."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: JobMsg, state: int) -> Activation[int]:
        match msg:
            case Work():
                return [], state + 1
            case Spin():
                n = 0
                while True:
                    n += 1
            case Block(seconds=seconds):
                time.sleep(seconds)
                return [], state + 1000
            case Crash():
                os.kill(os.getpid(), signal.SIGKILL)
                raise AssertionError("unreachable: the process is gone")


class Strict(Entity[str, JobMsg, int]):
    """The same work under a budget of its own."""

    activation_budget: ClassVar[float | None] = 0.2

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: JobMsg, state: int) -> Activation[int]:
        return Job().activate(msg, state)
