"""The durable runtime: `DurableRuntime` (`runtime`, with the design note and
the dispatch loop) and the functions it is made of, one module per part:
`records`, `mail`, `entry`, `build`, `turns`, `apply`, `recovery`, `reads`."""

from pachytype._runtime.durable.reads import decode_dead
from pachytype._runtime.durable.records import CACHE_SIZE, MAX_ATTEMPTS, MAX_BACKLOG, MAX_BATCH
from pachytype._runtime.durable.recovery import rebuild_journal
from pachytype._runtime.durable.runtime import DurableRuntime

__all__ = [
    "CACHE_SIZE",
    "MAX_ATTEMPTS",
    "MAX_BACKLOG",
    "MAX_BATCH",
    "DurableRuntime",
    "decode_dead",
    "rebuild_journal",
]
