"""Rolling deploys, the decisions: which version reads which states, decodes
which messages, may own which partition, and which two cannot run side by
side (pure: descriptions built by hand, and of two real registries)."""

from __future__ import annotations

import pytest

from pachytype import VersionSkewError
from pachytype._compat import (
    Description,
    conflicts,
    decodes,
    describe_registry,
    describe_schema,
    eligible,
    reads_state,
)
from pachytype._inbox import INBOX
from pachytype._postgres.deploy import Deployment
from pachytype._postgres.partition import assign
from pachytype._schema import ClassSchema, EntitySchema, FieldSchema, Schema
from tests.rolling_v1 import refs as refs_v1
from tests.rolling_v1.entities import Bump as BumpV1
from tests.rolling_v2 import refs as refs_v2
from tests.rolling_v2.entities import Bump, Tag

P = "__package__.shop."
Fields = tuple[tuple[str, str, bool], ...]  # (name, type, has a default)
COUNT: Fields = (("count", "int", True),)
ADD: Fields = (("n", "int", False),)


def app(
    *,
    version: int = 1,
    reads_from: int | None = None,
    state: Fields = COUNT,
    messages: dict[str, Fields] | None = None,
    entity: str = "cart",
    fingerprint: str = "",
) -> Description:
    """A one-entity application as its description would say."""
    messages = {"Add": ADD} if messages is None else messages

    def klass(name: str, fields: Fields) -> ClassSchema:
        return ClassSchema(P + name, True, tuple(FieldSchema(n, t, False, d) for n, t, d in fields))

    classes = {P + "State": klass("State", state)}
    classes.update({P + m: klass(m, f) for m, f in messages.items()})
    entities = (
        EntitySchema(
            entity, P + "Cart", "str", tuple(sorted(P + m for m in messages)), P + "State", version
        ),
    )
    schema = Schema("shop", entities, classes)
    return describe_schema(schema, fingerprint, {entity: reads_from or version})


V1 = app(fingerprint="1" * 64)
V2 = app(version=2, reads_from=1, fingerprint="2" * 64)


def test_the_same_registry_reads_and_decodes_what_it_writes() -> None:
    assert reads_state(V1, V1, "cart") is None
    assert decodes(V1, V1, "cart", P + "Add") is None
    assert conflicts(V1, V1) == []
    assert eligible(V1, [V1])


def test_a_newer_version_with_an_upgrade_chain_reads_older_states_not_the_reverse() -> None:
    assert reads_state(V2, V1, "cart") is None
    assert reads_state(V1, V2, "cart") == (
        "'shop' (222222222222) writes state version 2 of 'cart', "
        "'shop' (111111111111) reads up to version 1"
    )
    assert conflicts(V1, V2) == []  # one direction is enough: deploy the newer
    assert eligible(V2, [V1, V2])
    assert not eligible(V1, [V1, V2])


def test_a_version_bump_without_an_upgrade_chain_to_it_is_a_conflict() -> None:
    v3 = app(version=3, reads_from=2, fingerprint="3" * 64)
    assert reads_state(v3, V1, "cart") == (
        "'shop' (111111111111) writes state version 1 of 'cart', 'shop' (333333333333) has "
        "no @upgrade chain from it (it reads versions 2 to 3)"
    )
    assert reads_state(v3, V2, "cart") is None
    assert conflicts(v3, V1) == [
        "neither reads the other's states of 'cart' ('shop' (111111111111) writes state "
        "version 1 of 'cart', 'shop' (333333333333) has no @upgrade chain from it (it reads "
        "versions 2 to 3); 'shop' (333333333333) writes state version 3 of 'cart', 'shop' "
        "(111111111111) reads up to version 1)"
    ]


def test_a_state_field_added_with_a_default_reads_old_states_the_old_code_not_new_ones() -> None:
    new = app(state=(*COUNT, ("note", "str", True)), fingerprint="4" * 64)
    assert reads_state(new, V1, "cart") is None
    assert reads_state(V1, new, "cart") == (
        "'shop' (444444444444) and 'shop' (111111111111) both write state version 1 of "
        "'cart' in different shapes, and states stored by the first do not decode in the "
        "second: field `State.note` removed (or renamed): stored data still has it and "
        "unknown keys are refused"
    )
    assert conflicts(V1, new) == []
    assert not eligible(V1, [new])
    assert eligible(new, [V1, new])


def test_a_renamed_state_field_at_the_same_version_is_a_conflict() -> None:
    renamed = app(state=(("total", "int", True),), fingerprint="5" * 64)
    assert reads_state(renamed, V1, "cart") is not None
    assert reads_state(V1, renamed, "cart") is not None
    [conflict] = conflicts(V1, renamed)
    assert conflict.startswith("neither reads the other's states of 'cart'")


def test_a_new_message_class_is_decoded_only_by_the_version_that_has_it() -> None:
    new = app(messages={"Add": ADD, "Clear": ()}, fingerprint="6" * 64)
    assert decodes(V1, new, "cart", P + "Clear") == (
        "'shop' (111111111111) has no message class Clear for 'cart'"
    )
    assert decodes(new, V1, "cart", P + "Add") is None
    assert decodes(V1, new, "cart", P + "Add") is None
    assert conflicts(V1, new) == []


def test_a_message_field_added_with_a_default_decodes_one_way() -> None:
    new = app(messages={"Add": (*ADD, ("why", "str", True))}, fingerprint="7" * 64)
    assert decodes(new, V1, "cart", P + "Add") is None
    assert decodes(V1, new, "cart", P + "Add") == (
        "'shop' (111111111111) decodes Add of 'cart' in another shape than 'shop' "
        "(777777777777) encodes it: field `Add.why` removed (or renamed): stored data still "
        "has it and unknown keys are refused"
    )
    assert conflicts(V1, new) == []


def test_a_message_retyped_both_ways_is_a_conflict() -> None:
    retyped = app(messages={"Add": (("n", "str", False),)}, fingerprint="8" * 64)
    [conflict] = conflicts(V1, retyped)
    assert conflict.startswith("neither decodes the other's Add of 'cart' (")
    assert "retyped from str to int" in conflict


def test_two_applications_with_no_entity_type_in_common_conflict() -> None:
    other = app(entity="invoice", fingerprint="9" * 64)
    assert conflicts(V1, other) == [
        "'shop' (111111111111) and 'shop' (999999999999) have no entity type in common "
        "(['cart'] and ['invoice']): two applications in one schema"
    ]


def test_descriptions_of_two_versions_of_a_real_package() -> None:
    v1, v2 = describe_registry(refs_v1.REGISTRY), describe_registry(refs_v2.REGISTRY)
    assert Description.from_json(v2.to_json()) == v2
    assert Description.from_json(v2.to_json()).digest == v2.digest
    # Package-relative: the same classes compare equal under two package names.
    bump = "__package__.entities.Bump"
    assert v1.entities["counter"].messages[bump] == v2.entities["counter"].messages[bump]
    assert v1.entities["audit"].state_fp == v2.entities["audit"].state_fp
    note = "__package__.entities.Note"
    assert v1.entities["audit"].messages[note] == v2.entities["audit"].messages[note]
    assert (v2.entities["counter"].version, v2.entities["counter"].reads_from) == (2, 1)
    assert reads_state(v2, v1, "counter") is None
    assert reads_state(v1, v2, "counter") is not None
    assert decodes(v1, v2, "counter", "__package__.entities.Tag") is not None
    assert conflicts(v1, v2) == []


def test_partitions_go_only_to_nodes_that_may_own_them() -> None:
    may: dict[int, set[str]] = {p: {"old1", "old2", "new"} for p in range(12)}
    for p in range(6):
        may[p] = {"new"}  # the new version has owned these
    owners = assign(12, ["old1", "old2", "new"], lambda p, node: node in may[p])
    assert all(owners[p] == "new" for p in range(6))
    assert sorted(owners) == list(range(12))
    # Nobody may own partition 0: it is left out, the rest are shared.
    owners = assign(12, ["old1", "old2"], lambda p, node: p != 0)
    assert sorted(owners) == list(range(1, 12))
    counts = sorted(list(owners.values()).count(n) for n in ("old1", "old2"))
    assert counts == [5, 6]
    # Without constraints it is the plain balanced assignment.
    assert assign(12, ["a", "b"], lambda p, node: True) == assign(12, ["a", "b"])


def test_a_sender_may_send_only_what_every_node_that_may_own_the_target_decodes() -> None:
    v1, v2 = describe_registry(refs_v1.REGISTRY), describe_registry(refs_v2.REGISTRY)
    client = Deployment("shop", v2, lease=5.0)
    client.know(v1)
    # Partition 3 was owned by v1 only; partition 4 by v2 since.
    client.see({"n1": v1.digest, "n4": v2.digest}, {3: [v1.digest], 4: [v1.digest, v2.digest]})
    assert not client.uniform
    client.check_send("counter", Bump, 3)
    client.check_send("counter", Tag, 4)  # only v2 nodes may own partition 4
    with pytest.raises(VersionSkewError) as info:
        client.check_send("counter", Tag, 3)
    assert str(info.value) == (
        f"cannot send Tag to entity type 'counter': live node n1 (which may own its partition "
        f"3) cannot decode it: 'tests.rolling_v1' ({v1.fingerprint[:12]}) has no message class "
        f"Tag for 'counter'. Deploy this version ('tests.rolling_v2' ({v2.fingerprint[:12]})) "
        f"to every node first (start the new nodes, then stop the old ones with SIGTERM), then "
        f"send it; nothing was sent"
    )
    # Once every live node runs v2, anything goes.
    client.see({"n4": v2.digest}, {3: [v1.digest]})
    client.check_send("counter", Tag, 3)


def test_a_call_needs_an_answer_its_caller_can_read() -> None:
    v1, v2 = describe_registry(refs_v1.REGISTRY), describe_registry(refs_v2.REGISTRY)
    old_client = Deployment("shop", v1, lease=5.0)
    old_client.know(v2)
    old_client.see({"n4": v2.digest}, {4: [v2.digest]})
    old_client.check_send("counter", BumpV1, 4)  # a send needs no answer
    with pytest.raises(VersionSkewError) as info:
        old_client.check_send("counter", BumpV1, 4, call=True)
    assert str(info.value) == (
        f"cannot call entity type 'counter' with Bump: live node n4 (which may own its "
        f"partition 4) would answer with a state this process cannot read: 'tests.rolling_v2' "
        f"({v2.fingerprint[:12]}) writes state version 2 of 'counter', 'tests.rolling_v1' "
        f"({v1.fingerprint[:12]}) reads up to version 1. Deploy the new version here too, or "
        f"use send (which needs no answer); nothing was sent"
    )


def test_registries_that_store_the_same_states_count_as_one_writer() -> None:
    more_messages = app(messages={"Add": ADD, "Clear": ()}, fingerprint="a" * 64)
    node = Deployment("shop", more_messages, lease=5.0)
    node.know(V1)
    node.know(V2)
    assert more_messages.writes == V1.writes != V2.writes
    assert node.same_writers() == [more_messages.digest, V1.digest]
    node.see({}, {0: [V1.digest], 1: [V2.digest]})
    node.wrote([0, 1])
    # Partition 0 lists a writer that stores what this one does: nothing to add.
    assert node.writers == {0: (V1.digest,), 1: (V2.digest, more_messages.digest)}


def test_the_library_entities_are_the_same_everywhere() -> None:
    v1, v2 = describe_registry(refs_v1.REGISTRY), describe_registry(refs_v2.REGISTRY)
    assert INBOX not in v2.entities  # not described: every registry has it
    assert decodes(v1, v2, INBOX, "__package__.entities.Tag") is None
    node = Deployment("shop", v2, lease=5.0)
    node.know(v1)
    node.see({"n1": v1.digest, "n4": v2.digest}, {0: [v1.digest]})
    inbox = refs_v2.REGISTRY.types[INBOX]
    assert inbox.messages  # the answers an `ask` may get: the package's message classes
    for message in inbox.messages:
        node.check_send(INBOX, message, 0)
