"""Forked worker processes: how many the machine offers, and mapping a job
over items in forked children that send back plain data (JSON), never
pickles. `_sample` spreads sampled executions with it; the parallel
exhaustive search (`_parallel_dpor`) runs its own longer-lived workers.

Design note
-----------
* **Fork, and send back plain data.** Children inherit the registry, the
  world and the user's entity classes; each writes its result as JSON
  (numbers, strings, lists) to a pipe, and the parent rebuilds what it
  needs by replaying (a simulation is deterministic). Nothing a child
  sends is ever turned into an object but numbers and strings.
* Without `fork` (Windows, macOS defaults) or with one worker, callers run
  in one process.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fork_map(job: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """`[job(i) for i in items]`, one forked process per item, in order. Each
    result must be JSON data: it crosses the process boundary as JSON bytes
    on a pipe (a child that fails sends null; the caller decides)."""
    gc.freeze()  # keep the parent's objects out of the children's collections
    children: list[tuple[int, int]] = []
    try:
        for item in items:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: compute, write, leave without cleanup
                os.close(read)
                _child(job, item, write)
            os.close(write)
            children.append((pid, read))
        results = []
        for pid, read in children:
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            os.waitpid(pid, 0)
            results.append(orjson.loads(data) if data else None)
        return results
    finally:
        gc.unfreeze()


def _child(job: Callable[[T], Any], item: T, write: int) -> None:
    code = 0
    try:
        # Searches allocate millions of acyclic objects: the cyclic collector
        # would rescan them all (see `_explore.without_cyclic_gc`).
        gc.disable()
        data = orjson.dumps(job(item))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
