"""Ids as canonical text (they are database keys): one spelling per id type."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import orjson
from attrs import frozen
from cattrs import Converter

from pachytype._codec.converter import spell, supertype
from pachytype._registry import EntityType


@frozen
class IdCodec:
    """How the ids of one entity type become text and back."""

    encode: Callable[[Hashable], str]
    decode: Callable[[str], Hashable]
    expected: str


def _str_id(id: Hashable) -> str:
    if type(id) is not str:
        raise TypeError("not a str")
    return id


def _decode_str_id(text: str) -> Hashable:
    return text


def _int_id(id: Hashable) -> str:
    if type(id) is not int:
        raise TypeError("not an int")
    return str(id)


def _decode_int_id(text: str) -> Hashable:
    value = int(text)
    if str(value) != text:
        raise ValueError("not canonical")
    return value


def _uuid_id(id: Hashable) -> str:
    if not isinstance(id, uuid.UUID):
        raise TypeError("not a UUID")
    return str(id)


def _decode_uuid_id(text: str) -> Hashable:
    value = uuid.UUID(text)
    if str(value) != text:
        raise ValueError("not canonical")
    return value


def _json_id(id: Hashable) -> str:
    if type(id) not in (str, int, bool):
        raise TypeError("not a str, int or bool")
    return orjson.dumps(id).decode()


def _decode_json_id(text: str) -> Hashable:
    value = orjson.loads(text)
    if type(value) not in (str, int, bool) or orjson.dumps(value).decode() != text:
        raise ValueError("not canonical")
    result: Hashable = value
    return result


def id_codec(converter: Converter, etype: EntityType) -> IdCodec:
    """How ids of `etype` are spelled: built in for str, int, UUID and plain
    hashables; the sorted-keys JSON of its fields for an attrs id."""
    base = supertype(etype.id_type)
    if base is str:
        return IdCodec(_str_id, _decode_str_id, "str")
    if base is int:
        return IdCodec(_int_id, _decode_int_id, "int")
    if base is uuid.UUID:
        return IdCodec(_uuid_id, _decode_uuid_id, "UUID")
    if base in (object, Any, Hashable):
        return IdCodec(_json_id, _decode_json_id, "str, int or bool")
    id_class: Any = base
    unstructure = converter.get_unstructure_hook(base)
    structure = converter.get_structure_hook(base)

    def encode(id: Hashable) -> str:
        if attrs.has(id_class) and type(id) is not id_class:
            raise TypeError(f"not a {id_class.__qualname__}")
        return orjson.dumps(unstructure(id), option=orjson.OPT_SORT_KEYS).decode()

    def decode(text: str) -> Hashable:
        value: Hashable = structure(orjson.loads(text), base)
        if encode(value) != text:
            raise ValueError("not canonical")
        return value

    return IdCodec(encode, decode, spell(base))
