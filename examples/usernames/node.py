"""A usernames node on PostgreSQL with its own name cache.

    PACHYTYPE_DSN=postgresql://... python -m examples.usernames.node SCHEMA CACHE_DB [NODE_ID]

runs the shards and signups of its share of the partitions (a Postgres
node) and keeps `NameCache(eco, CACHE_DB)`: every node answers "is this name
taken?" from its own file, whichever node granted the name. Killed and
started again with the same CACHE_DB, the cache resumes from the position
stored in that file.

It reports on stdout, one line each, for whoever runs it (the tests and
`python -m benchmarks events` read them): `open POSITION` once the cache
loaded its checkpoint, then `applied APPLIED POSITION MONOTONIC` after each
batch it applied (`time.monotonic()`, comparable across processes of one
machine). SIGTERM stops it cleanly (its partitions are handed over).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta

from examples.usernames.cache import NameCache
from examples.usernames.refs import REGISTRY
from pachytype import Postgres

LEASE = timedelta(seconds=2)
"""Short, so that a killed node's shards move to the others quickly."""


async def run(dsn: str, schema: str, cache_path: str, node_id: str | None) -> None:
    """Serve until SIGTERM, reporting the cache's progress on stdout."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with (
        Postgres(dsn, REGISTRY, schema=schema, node_id=node_id, lease=LEASE) as eco,
        NameCache(eco, cache_path) as cache,
    ):
        print(f"open {cache.position}", flush=True)
        reporter = asyncio.ensure_future(_report(cache))
        await stop.wait()
        reporter.cancel()


async def _report(cache: NameCache) -> None:
    projection = cache.projection
    reported = 0

    def moved(_: object) -> bool:
        return projection.applied != reported

    while True:
        await projection.wait_until(moved)
        reported = projection.applied
        print(f"applied {reported} {cache.position} {time.monotonic():.6f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or "PACHYTYPE_DSN" not in os.environ:
        sys.exit(
            "usage: PACHYTYPE_DSN=postgresql://... python -m examples.usernames.node "
            "SCHEMA CACHE_DB [NODE_ID]"
        )
    asyncio.run(
        run(
            os.environ["PACHYTYPE_DSN"],
            sys.argv[1],
            sys.argv[2],
            sys.argv[3] if len(sys.argv) == 4 else None,
        )
    )
