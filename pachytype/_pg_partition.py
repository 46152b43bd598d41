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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def partition_of(entity_type: str, id_text: str, partitions: int) -> int:
    """The partition of the entity `(entity_type, id_text)`, in `range(partitions)`."""
    return _hash64(f"{entity_type}\x00{id_text}") % partitions


def assign(partitions: int, nodes: Iterable[str]) -> dict[int, str]:
    """`partition -> node` for the live `nodes`: balanced, rendezvous-ordered."""
    live = sorted(set(nodes))
    if not live:
        return {}
    base, extra = divmod(partitions, len(live))
    count = dict.fromkeys(live, 0)
    big = 0  # nodes already holding base + 1
    owners: dict[int, str] = {}
    for p in range(partitions):
        ranked = sorted(live, key=lambda node: _hash64(f"{node}\x00{p}"), reverse=True)
        for node in ranked:
            if count[node] < base or (count[node] == base and big < extra):
                if count[node] == base:
                    big += 1
                count[node] += 1
                owners[p] = node
                break
    return owners
