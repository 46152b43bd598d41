"""Interim codec (until pachytype._codec lands): cattrs + orjson. To be deleted."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson
from cattrs.preconf.orjson import make_converter

from pachytype._address import Address, Ref, make_ref
from pachytype._registry import Registry


class Codec:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        conv = make_converter()

        def is_address(t: Any) -> bool:
            origin = getattr(t, "__origin__", t)
            return isinstance(origin, type) and issubclass(origin, Address)

        conv.register_unstructure_hook_func(is_address, lambda a: [a.entity_type, a.id])

        conv.register_structure_hook_func(is_address, lambda v, t: make_ref(Ref, v[0], v[1]))
        self.conv = conv

    def encode_id(self, entity_type: str, id: Hashable) -> str:
        return orjson.dumps(self.conv.unstructure(id)).decode()

    def decode_id(self, entity_type: str, text: str) -> Hashable:
        t = self.registry.types[entity_type].id_type
        value: Hashable = self.conv.structure(orjson.loads(text), t)
        return value

    def encode_message(self, entity_type: str, message: object) -> bytes:
        return orjson.dumps([type(message).__name__, self.conv.unstructure(message)])

    def decode_message(self, entity_type: str, data: bytes) -> object:
        name, value = orjson.loads(data)
        for cls in self.registry.types[entity_type].messages:
            if cls.__name__ == name:
                return self.conv.structure(value, cls)
        raise ValueError(f"unknown message {name}")

    def encode_state(self, entity_type: str, state: object) -> bytes:
        t = self.registry.types[entity_type].state
        return orjson.dumps(self.conv.unstructure(state, t))

    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> object:
        t = self.registry.types[entity_type].state
        return self.conv.structure(orjson.loads(data), t)
