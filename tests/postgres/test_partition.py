"""Partitions: every process agrees where an entity lives, and live nodes
share partitions evenly, moving few when one joins or leaves (pure code)."""

from __future__ import annotations

import math
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from pachytype._postgres.partition import assign, partition_of


def test_an_entity_hashes_to_the_same_partition_in_every_process() -> None:
    code = (
        "from pachytype._postgres.partition import partition_of;"
        "print([partition_of('account', str(i), 64) for i in range(50)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([partition_of("account", str(i), 64) for i in range(50)])


def test_entities_spread_over_all_partitions() -> None:
    seen = {partition_of("sink", str(i), 16) for i in range(1000)}
    assert seen == set(range(16))


def test_the_entity_type_is_part_of_the_hash() -> None:
    differ = [
        i for i in range(100) if partition_of("a", str(i), 64) != partition_of("b", str(i), 64)
    ]
    assert len(differ) > 80


@given(
    partitions=st.integers(min_value=1, max_value=128),
    nodes=st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=9),
)
def test_assignment_is_even_and_complete(partitions: int, nodes: set[str]) -> None:
    owners = assign(partitions, nodes)
    assert sorted(owners) == list(range(partitions))
    assert set(owners.values()) <= nodes
    counts = [list(owners.values()).count(n) for n in nodes]
    assert max(counts) - min(counts) <= 1


@given(partitions=st.integers(min_value=8, max_value=128), n=st.integers(1, 8))
def test_a_joining_node_moves_about_its_share(partitions: int, n: int) -> None:
    before = assign(partitions, [f"node{i}" for i in range(n)])
    after = assign(partitions, [f"node{i}" for i in range(n + 1)])
    moved = sum(before[p] != after[p] for p in range(partitions))
    # Ideally ceil(P / (n + 1)); balancing moves a few more.
    assert moved <= 1.25 * math.ceil(partitions / (n + 1)) + n


def test_every_node_computes_the_same_assignment_whatever_the_order() -> None:
    assert assign(32, ["b", "a", "c"]) == assign(32, ["c", "b", "a", "a"])


def test_no_live_node_owns_nothing() -> None:
    assert assign(8, []) == {}
