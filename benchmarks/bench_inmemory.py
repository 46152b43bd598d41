"""InMemory throughput and latency, beside bare asyncio doing the same work.

* `inmemory.fanout`: 10,000 entities x 100 messages, fire and forget, sent
  from outside in 100 batches of 10,000; activations/s from the first send to
  the last activation. Baseline: one task + one `asyncio.Queue` per actor,
  the same messages `put_nowait` in the same batches.
* `inmemory.call`: sequential `call` round trips to one entity. Baseline: a
  request/response ping-pong between two tasks over two `asyncio.Queue`s.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks._record import Record
from benchmarks.workload import refs
from benchmarks.workload.entities import Hit
from pachytype import Envelope, InMemory

ENTITIES = 10_000
PER_ENTITY = 100
CALLS = 100_000
REPEAT = 3


def _best(measure: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Best of REPEAT runs, each on a fresh event loop (seconds)."""
    timings = []
    for _ in range(REPEAT):
        gc.collect()
        timings.append(asyncio.run(measure()))
    return min(timings)


def _batches() -> list[list[Envelope[int]]]:
    sinks = [refs.sink(i) for i in range(ENTITIES)]
    return [[s.hit(n=1) for s in sinks] for _ in range(PER_ENTITY)]


async def _fanout_pachytype(roundtrip: bool) -> float:
    batches = _batches()
    async with InMemory(refs.REGISTRY, roundtrip=roundtrip) as eco:
        started = time.perf_counter()
        for batch in batches:
            await eco.send(*batch)
        await eco.settle()
        elapsed = time.perf_counter() - started
        assert await eco.state(refs.sink(ENTITIES - 1)) == PER_ENTITY
    return elapsed


async def _fanout_asyncio() -> float:
    queues: list[asyncio.Queue[Hit | None]] = [asyncio.Queue() for _ in range(ENTITIES)]
    totals = [0] * ENTITIES

    async def actor(i: int, q: asyncio.Queue[Hit | None]) -> None:
        state = 0
        while (msg := await q.get()) is not None:
            state += msg.n
        totals[i] = state

    batches = [[Hit(1) for _ in range(ENTITIES)] for _ in range(PER_ENTITY)]
    tasks = [asyncio.create_task(actor(i, q)) for i, q in enumerate(queues)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    for batch in batches:
        for q, msg in zip(queues, batch, strict=True):
            q.put_nowait(msg)
        await asyncio.sleep(0)
    for q in queues:
        q.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    assert totals[-1] == PER_ENTITY
    return elapsed


async def _call_pachytype(roundtrip: bool) -> float:
    target = refs.sink(0)
    envelopes = [target.hit(n=1) for _ in range(CALLS)]
    async with InMemory(refs.REGISTRY, roundtrip=roundtrip) as eco:
        started = time.perf_counter()
        for env in envelopes:
            await eco.call(env)
        elapsed = time.perf_counter() - started
        assert await eco.state(target) == CALLS
    return elapsed


async def _call_asyncio() -> float:
    requests: asyncio.Queue[Hit | None] = asyncio.Queue()
    replies: asyncio.Queue[int] = asyncio.Queue()

    async def actor() -> None:
        state = 0
        while (msg := await requests.get()) is not None:
            state += msg.n
            replies.put_nowait(state)

    task = asyncio.create_task(actor())
    messages = [Hit(1) for _ in range(CALLS)]
    started = time.perf_counter()
    for msg in messages:
        requests.put_nowait(msg)
        await replies.get()
    elapsed = time.perf_counter() - started
    requests.put_nowait(None)
    await task
    return elapsed


def run() -> list[Record]:
    total = ENTITIES * PER_ENTITY
    fanout = total / _best(lambda: _fanout_pachytype(roundtrip=False))
    fanout_codec = total / _best(lambda: _fanout_pachytype(roundtrip=True))
    fanout_base = total / _best(_fanout_asyncio)
    call = CALLS / _best(lambda: _call_pachytype(roundtrip=False))
    call_codec = CALLS / _best(lambda: _call_pachytype(roundtrip=True))
    call_base = CALLS / _best(_call_asyncio)
    return [
        Record(
            "inmemory.fanout",
            fanout,
            "activations/s",
            "asyncio task+Queue per actor",
            fanout_base,
            f"{ENTITIES:,} entities x {PER_ENTITY} msgs, roundtrip=False",
        ),
        Record(
            "inmemory.fanout.roundtrip",
            fanout_codec,
            "activations/s",
            "inmemory.fanout (roundtrip=False)",
            fanout,
            "the default: every message and state through the codec",
        ),
        Record(
            "inmemory.call",
            call,
            "round trips/s",
            "asyncio Queue ping-pong",
            call_base,
            f"{CALLS:,} sequential calls, roundtrip=False",
        ),
        Record(
            "inmemory.call.roundtrip",
            call_codec,
            "round trips/s",
            "inmemory.call (roundtrip=False)",
            call,
            "the default: every message and state through the codec",
        ),
    ]
