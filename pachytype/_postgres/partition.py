"""Partitions: which partition an entity belongs to, and which node should own
each partition. Pure functions; every node computes the same answers.

Design note
-----------
* **Stable hash.** An entity's partition is a hash of its entity type and
  canonical id text (blake2b, not Python's salted `hash()`), so every node,
  process and Python version agrees forever. The partition count is fixed
  when the schema is created.
* **Even and sticky.** `assign` gives each live node `P // n` or
  `P // n + 1` partitions. Each partition prefers nodes in rendezvous-hash
  order (highest `hash(node, partition)` first), so when a node joins or
  leaves, most partitions keep their owner: only about `P / n` move.
* **Only where it can read.** During a rolling deploy a partition may hold
  states a node cannot read (written by a newer version); `assign` takes
  the predicate saying which nodes may own which partition (`_postgres/deploy.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def partition_of(entity_type: str, id_text: str, partitions: int) -> int:
    """The partition of the entity `(entity_type, id_text)`, in `range(partitions)`."""
    return _hash64(f"{entity_type}\x00{id_text}") % partitions


def assign(
    partitions: int,
    nodes: Iterable[str],
    eligible: Callable[[int, str], bool] | None = None,
) -> dict[int, str]:
    """`partition -> node` for the live `nodes`: balanced, rendezvous-ordered.

    With `eligible(partition, node)`, a partition goes only to a node that may
    own it (one that reads every state stored there, during a rolling
    deploy); a partition no live node may own is left out, and a node may get
    more than its share when it alone may own some partitions.
    """
    live = sorted(set(nodes))
    if not live:
        return {}
    ranked = {}
    for p in range(partitions):
        order = sorted(live, key=lambda node: (_hash64(f"{node}\x00{p}"), node), reverse=True)
        if eligible is not None:
            order = [node for node in order if eligible(p, node)]
        if order:
            ranked[p] = order
    owners = {p: order[0] for p, order in ranked.items()}  # unconstrained favourites
    natural = {node: 0 for node in live}
    for node in owners.values():
        natural[node] += 1
    base, extra = divmod(len(ranked), len(live))
    # The most popular nodes keep one more, so fewer partitions have to move.
    by_load = sorted(live, key=lambda node: (-natural[node], node))
    cap = {node: base + (i < extra) for i, node in enumerate(by_load)}
    count = dict.fromkeys(live, 0)
    spill = []
    # Each node keeps the partitions that prefer it most; the rest spill over.
    # Partitions with fewer possible owners choose first (all equal without
    # `eligible`).
    for p in sorted(owners, key=lambda p: (len(ranked[p]), -_hash64(f"{owners[p]}\x00{p}"))):
        node = owners[p]
        if count[node] < cap[node]:
            count[node] += 1
        else:
            spill.append(p)
    for p in sorted(spill, key=lambda p: (len(ranked[p]), p)):
        free = [n for n in ranked[p] if count[n] < cap[n]]
        # (only full nodes may own it: the least loaded of them)
        node = free[0] if free else min(ranked[p], key=lambda n: (count[n], n))
        owners[p] = node
        count[node] += 1
    return owners
