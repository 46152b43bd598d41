"""The codec: ids canonical, messages tagged, addresses and envelopes round-trip,
bad bytes refused with errors that say where and what."""

from __future__ import annotations

import uuid

import pytest

from examples.counter import refs as counter_refs
from examples.counter.counter import Add, CounterId
from examples.ping_pong import refs as ping_refs
from examples.ping_pong.ping import PingerId, PingerState, Pong
from examples.ping_pong.pong import Ping, PongerId
from pachytype import DecodeError, EncodeError, UnknownEntityError, WrongMessageError
from pachytype._codec import Codec
from tests.codec_pkg.boxes import Box, BoxNo, Empty, Full, Put, Seal, ShelfId, Vacant
from tests.codec_pkg.desk import Desk, Note, NoteId
from tests.codec_pkg.registry import REGISTRY


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(REGISTRY)


# -- ids ----------------------------------------------------------------------


def test_ids_are_canonical_text(codec: Codec) -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert codec.encode_id("box", 42) == "42"
    assert codec.encode_id("desk", NoteId("n 1")) == "n 1"
    assert codec.encode_id("crate", u) == "12345678-1234-5678-1234-567812345678"
    assert codec.encode_id("shelf", ShelfId(aisle="b", level=3)) == '{"aisle":"b","level":3}'


def test_ids_round_trip(codec: Codec) -> None:
    u = uuid.uuid4()
    shelf = ShelfId("a", 2)
    for name, id in [("box", -7), ("desk", "é/ü"), ("crate", u), ("shelf", shelf)]:
        assert codec.decode_id(name, codec.encode_id(name, id)) == id


def test_non_canonical_id_text_is_refused(codec: Codec) -> None:
    with pytest.raises(DecodeError) as error:
        codec.decode_id("box", "007")
    assert str(error.value) == (
        "cannot decode the id of entity 'box' (id unknown): at $: expected the canonical "
        "text of int (not canonical), got '007'; ids of 'box' are int, stored as the text "
        "Codec.encode_id writes; this id text was not written by this code"
    )
    with pytest.raises(DecodeError):
        codec.decode_id("shelf", '{"level":3,"aisle":"b"}')
    with pytest.raises(DecodeError):
        codec.decode_id("crate", "12345678123456781234567812345678")


def test_an_id_of_the_wrong_type_is_refused(codec: Codec) -> None:
    with pytest.raises(EncodeError) as error:
        codec.encode_id("box", "42")
    assert str(error.value) == (
        "cannot encode the id of entity 'box' (id '42'): expected int, got str (not an int); "
        "build the address with the entity's ref"
    )


def test_an_unknown_entity_type_is_named(codec: Codec) -> None:
    with pytest.raises(UnknownEntityError, match="unknown entity type 'boat'"):
        codec.encode_id("boat", 1)


# -- messages -----------------------------------------------------------------


def test_messages_are_tagged_by_class(codec: Codec) -> None:
    data = codec.encode_message("box", Empty())
    assert data == b'["Empty",{}]'
    assert codec.decode_message("box", data) == Empty()


def test_message_with_narrowed_address_imported_only_for_mypy_round_trips(codec: Codec) -> None:
    # `Put.notify: Address[Note]` names `Note` only under TYPE_CHECKING.
    put = Put(
        "cup",
        notify=Desk.address(NoteId("d1")),
        label="kitchen",
        tags=("a", "b"),
        weight=0.5,
        fragile=True,
        desk=NoteId("d1"),
    )
    data = codec.encode_message("box", put)
    assert data == (
        b'["Put",{"item":"cup","notify":["desk","d1"],"label":"kitchen","tags":["a","b"],'
        b'"weight":0.5,"fragile":true,"desk":"d1","size":[1,1]}]'
    )
    assert codec.decode_message("box", data) == put
    note = Note("hello", by=Box.address(BoxNo(3)))
    assert codec.decode_message("desk", codec.encode_message("desk", note)) == note


def test_example_messages_round_trip() -> None:
    ping = Codec(ping_refs.REGISTRY)
    msg = Ping(n=3, reply_to=ping_refs.pinger(PingerId("p")))
    assert ping.decode_message("ponger", ping.encode_message("ponger", msg)) == msg
    pong = Pong(n=1, by=PongerId("q"))
    assert ping.decode_message("pinger", ping.encode_message("pinger", pong)) == pong


def test_a_message_of_another_class_is_refused(codec: Codec) -> None:
    with pytest.raises(WrongMessageError, match=r"entity .box. .* cannot receive a Seal"):
        codec.encode_message("box", Seal())


def test_unknown_tag(codec: Codec) -> None:
    with pytest.raises(DecodeError) as error:
        codec.decode_message("box", b'["Shake",{}]', BoxNo(4))
    assert str(error.value) == (
        "cannot decode the message of entity 'box' (id 4): at $[0]: unknown message class, "
        "expected one of Empty | Put, got 'Shake'; the message does not match the entity's "
        "message classes in this code; if a message class changed, keep old messages "
        "decodable (give new fields a default) or drain the mailbox before deploying"
    )
    assert error.value.path == "$[0]"
    assert error.value.value == "Shake"


def test_wrong_field_type_names_the_path_and_value(codec: Codec) -> None:
    data = b'["Put",{"item":"cup","notify":["desk","d1"],"tags":["a",5]}]'
    with pytest.raises(DecodeError) as error:
        codec.decode_message("box", data, BoxNo(4))
    assert str(error.value).startswith(
        "cannot decode the message of entity 'box' (id 4): at $[1].tags[1]: expected a str, got 5; "
    )


def test_numbers_in_strings_are_not_numbers(codec: Codec) -> None:
    with pytest.raises(DecodeError, match=r"at \$\[1\]\.weight: expected a float, got '1.5'"):
        codec.decode_message(
            "box", b'["Put",{"item":"x","notify":["desk","d"],"weight":"1.5"}]', BoxNo(1)
        )


def test_missing_and_unknown_fields(codec: Codec) -> None:
    with pytest.raises(DecodeError, match=r"at \$\[1\]\.notify: required field missing"):
        codec.decode_message("box", b'["Put",{"item":"x"}]')
    with pytest.raises(DecodeError, match=r"at \$\[1\]: unknown field\(s\) colour"):
        codec.decode_message("box", b'["Put",{"item":"x","notify":["desk","d"],"colour":1}]')


def test_an_address_outside_the_registry_is_refused(codec: Codec) -> None:
    with pytest.raises(DecodeError) as error:
        codec.decode_message("desk", b'["Note",{"text":"t","by":["boat","1"]}]')
    assert "at $[1].by: expected an entity type of tests.codec_pkg, got 'boat'" in str(error.value)


def test_an_address_with_a_bad_id_is_refused(codec: Codec) -> None:
    with pytest.raises(DecodeError, match=r"at \$\[1\]\.by: expected an id of 'box' \(int\)"):
        codec.decode_message("desk", b'["Note",{"text":"t","by":["box","x1"]}]')


def test_not_json_and_wrong_shape(codec: Codec) -> None:
    with pytest.raises(DecodeError, match=r"at \$: not JSON"):
        codec.decode_message("box", b"\x80\x04")
    with pytest.raises(DecodeError, match=r'at \$: expected \["MessageClass", \{fields\}\]'):
        codec.decode_message("box", b'{"Empty":{}}')


# -- state ---------------------------------------------------------------------


def test_union_state_is_tagged(codec: Codec) -> None:
    full = Full(("a",), watchers=(Desk.address(NoteId("d")),))
    data = codec.encode_state("box", full)
    assert data == b'["Full",{"items":["a"],"watchers":[["desk","d"]]}]'
    assert codec.decode_state("box", BoxNo(1), data, 1) == full
    assert codec.decode_state("box", 1, codec.encode_state("box", Vacant(3)), 1) == Vacant(3)


def test_plain_states_round_trip(codec: Codec) -> None:
    assert codec.decode_state("crate", uuid.uuid4(), codec.encode_state("crate", True), 1)
    data = codec.encode_state("desk", ("a", "b"))
    assert codec.decode_state("desk", "d", data, 1) == ("a", "b")


def test_state_of_the_wrong_shape(codec: Codec) -> None:
    with pytest.raises(DecodeError) as error:
        codec.decode_state("box", BoxNo(9), b'["Full",{"items":"abc"}]', 1)
    assert str(error.value) == (
        "cannot decode the state of entity 'box' (id 9): at $[1].items: expected a list of "
        "str, got 'abc'; the stored state (version 1) does not fit Full | Vacant: if the "
        "state's shape changed, bump state_version to 2 and add @upgrade(from_version=1) "
        "converting the old shape"
    )


def test_encoding_a_state_of_the_wrong_type_is_refused(codec: Codec) -> None:
    with pytest.raises(EncodeError, match="cannot encode the state of entity 'desk'"):
        codec.encode_state("desk", object())


# -- envelopes -----------------------------------------------------------------


def test_envelope_round_trip_and_target_without_the_body() -> None:
    codec = Codec(counter_refs.REGISTRY)
    envelope = counter_refs.counter(CounterId("c/1")).add(amount=5)
    data = codec.encode_envelope(envelope)
    assert data == b'["counter","c/1",0.0]\n["Add",{"amount":5}]'
    assert codec.envelope_target(data) == ("counter", "c/1")
    decoded = codec.decode_envelope(data)
    assert decoded == envelope
    assert decoded.message == Add(5)


def test_a_delayed_envelope_keeps_its_delay() -> None:
    from datetime import timedelta

    codec = Codec(ping_refs.REGISTRY)
    envelope = (
        ping_refs.pinger(PingerId("p")).pong(n=2, by=PongerId("q")).after(timedelta(seconds=1.5))
    )
    decoded = codec.decode_envelope(codec.encode_envelope(envelope))
    assert decoded == envelope
    assert decoded.delay == timedelta(seconds=1.5)


def test_envelope_with_a_bad_header() -> None:
    codec = Codec(counter_refs.REGISTRY)
    with pytest.raises(DecodeError) as error:
        codec.decode_envelope(b'{"to":"counter"}\n["Add",{"amount":5}]')
    assert str(error.value) == (
        "cannot decode the envelope of entity '<unknown>' (id unknown): at header: expected "
        'a first line [entity type, id text, delay seconds], got b\'{"to":"counter"}\'; '
        "these bytes were not written by Codec.encode_envelope"
    )


def test_pinger_state_round_trips() -> None:
    codec = Codec(ping_refs.REGISTRY)
    state = PingerState(me=PingerId("p"), rallies=3, pongs=(1, 2))
    data = codec.encode_state("pinger", state)
    assert codec.decode_state("pinger", "p", data, 1) == state


def test_int_keys_travel_as_canonical_digits(codec: Codec) -> None:
    data = codec.encode_state("ledger", {1: "a", -20: "b"})
    assert data == b'{"1":"a","-20":"b"}'
    assert codec.decode_state("ledger", "l", data, 1) == {1: "a", -20: "b"}
    with pytest.raises(
        DecodeError, match=r"at \$: expected an int key \(canonical digits\), got '01'"
    ):
        codec.decode_state("ledger", "l", b'{"01":"a"}', 1)


def test_a_field_typed_with_a_generated_ref_class_decodes_as_that_class() -> None:
    from tests.golden.ping_pong import refs
    from tests.golden.ping_pong.client import ClientId
    from tests.golden.ping_pong.server import Hello

    codec = Codec(refs.REGISTRY)
    c1 = ClientId("c1")
    hello = Hello(client=refs.client(c1))
    decoded = codec.decode_message("server", codec.encode_message("server", hello))
    assert decoded == hello
    assert isinstance(decoded, Hello)
    assert type(decoded.client) is refs.ClientRef
    assert decoded.client.pong(n=1) == refs.client(c1).pong(n=1)
    with pytest.raises(DecodeError, match="expected an address of the entity ClientRef refers to"):
        codec.decode_message("server", b'["Hello",{"client":["server","c1"]}]')


def test_fixed_tuples_need_a_list_of_that_length(codec: Codec) -> None:
    put = Put("cup", notify=Desk.address(NoteId("d")), size=(2, 3))
    assert codec.decode_message("box", codec.encode_message("box", put)) == put
    with pytest.raises(DecodeError, match=r"at \$\[1\]\.size: expected a list of 2 items"):
        codec.decode_message("box", b'["Put",{"item":"x","notify":["desk","d"],"size":"ab"}]')
    with pytest.raises(DecodeError, match=r"at \$\[1\]\.size\[1\]: expected an int, got 'b'"):
        codec.decode_message("box", b'["Put",{"item":"x","notify":["desk","d"],"size":[1,"b"]}]')


def test_an_address_outside_the_registry_is_not_encoded(codec: Codec) -> None:
    stranger = counter_refs.counter(CounterId("c"))  # another package's entity
    with pytest.raises(EncodeError) as error:
        codec.encode_message("desk", Note("hi", by=stranger))  # type: ignore[arg-type]
    assert str(error.value).startswith(
        "cannot encode the Note message of entity 'desk' (id unknown): unknown entity type "
        "'counter' (id 'c'): registry of 'tests.codec_pkg' has "
    )
