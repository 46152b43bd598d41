"""A worker whose `activate` can loop forever or block, to test the activation budget."""

from __future__ import annotations

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


JobMsg = Work | Spin | Block


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


class Strict(Entity[str, JobMsg, int]):
    """The same work under a budget of its own."""

    activation_budget: ClassVar[float | None] = 0.2

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: JobMsg, state: int) -> Activation[int]:
        return Job().activate(msg, state)
