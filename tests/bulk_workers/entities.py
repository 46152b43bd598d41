"""A worker with a trivial effect and the board its results go to: enough to
pile up thousands of pending requests and watch them drain."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Address, Attempt, Entity, Worker


@frozen
class JobDone:
    """Job `n` was performed."""

    n: int


class Board(Entity[str, JobDone, int]):
    """Counts the jobs done."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: JobDone, state: int) -> Activation[int]:
        return [], state + 1


@frozen
class Job:
    """Do job `n`; say so to `reply_to`."""

    n: int
    reply_to: Address[JobDone]


class Jobs(Worker[Job, JobDone]):
    """Performs jobs at once (no I/O): the cost measured is the worker's own."""

    concurrency = 64
    shards = 16
    timeout = 30.0

    async def perform(self, request: Job, attempt: Attempt) -> JobDone:
        return JobDone(request.n)
