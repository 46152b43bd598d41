"""Bytes for the PostgreSQL ecosystem: ids, messages and states of a registry.

Uses the shared codec (`pachytype._codec.Codec`) when it is available; until
then, this module carries a compatible fallback (same method names and
meanings) so the PostgreSQL ecosystem can run on its own. Either way:
JSON through cattrs + orjson, messages tagged with their class name, states
tagged with their `state_version` and upgraded on load by the entity's
`@upgrade` chain. Nothing is unpickled; decoding only builds registered types.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, get_origin

import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from pachytype._address import Address, Ref, make_ref
from pachytype._errors import PachytypeError
from pachytype._registry import Registry


class DecodeError(PachytypeError, ValueError):
    """Stored or received bytes that do not decode into the registered types."""


class Codec(Protocol):
    """What the PostgreSQL ecosystem needs from a codec."""

    def encode_id(self, entity_type: str, id: Hashable) -> str: ...
    def decode_id(self, entity_type: str, text: str) -> Hashable: ...
    def encode_message(self, entity_type: str, message: object) -> bytes: ...
    def decode_message(self, entity_type: str, data: bytes) -> object: ...
    def encode_state(self, entity_type: str, state: object) -> bytes: ...
    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> Any: ...


def _is_address(t: Any) -> bool:
    origin = get_origin(t) or t
    return isinstance(origin, type) and issubclass(origin, Address)


class FallbackCodec:
    """JSON codec for one registry (see the module docstring)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._conv = make_converter()
        self._conv.register_unstructure_hook_func(_is_address, self._unstructure_address)
        self._conv.register_structure_hook_func(_is_address, self._structure_address)
        self._classes = {
            t.name: {m.__qualname__: m for m in t.messages} for t in registry.types.values()
        }

    def _unstructure_address(self, address: Address[Any]) -> list[str]:
        return [address.entity_type, self.encode_id(address.entity_type, address.id)]

    def _structure_address(self, raw: Any, _type: Any) -> Address[Any]:
        entity_type, text = raw
        return make_ref(Ref, entity_type, self.decode_id(entity_type, text))

    def encode_id(self, entity_type: str, id: Hashable) -> str:
        etype = self.registry.get(entity_type, id)
        raw = self._conv.unstructure(id, etype.id_type)
        return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()

    def decode_id(self, entity_type: str, text: str) -> Hashable:
        etype = self.registry.get(entity_type, text)
        try:
            id: Hashable = self._conv.structure(orjson.loads(text), etype.id_type)
        except (orjson.JSONDecodeError, cattrs.BaseValidationError, TypeError, ValueError) as e:
            raise DecodeError(
                f"entity {entity_type!r}: stored id {text!r} is not a valid "
                f"{etype.id_type!r} ({e}); the row was written by another registry"
            ) from e
        return id

    def encode_message(self, entity_type: str, message: object) -> bytes:
        raw = self._conv.unstructure(message, type(message))
        return orjson.dumps([type(message).__qualname__, raw])

    def decode_message(self, entity_type: str, data: bytes) -> object:
        classes = self._classes.get(entity_type)
        if classes is None:
            self.registry.get(entity_type)
            raise AssertionError("unreachable")
        try:
            name, raw = orjson.loads(data)
            cls = classes[name]
            message: object = self._conv.structure(raw, cls)
        except (
            orjson.JSONDecodeError,
            cattrs.BaseValidationError,
            KeyError,
            TypeError,
            ValueError,
        ) as e:
            raise DecodeError(
                f"entity {entity_type!r}: stored message {bytes(data[:80])!r} does not decode "
                f"into one of {sorted(classes)} ({type(e).__name__}: {e}); it was written by "
                f"another registry version or corrupted: fix or delete the row"
            ) from e
        return message

    def encode_state(self, entity_type: str, state: object) -> bytes:
        etype = self.registry.types[entity_type]
        return orjson.dumps(self._conv.unstructure(state, etype.state))

    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> Any:
        etype = self.registry.get(entity_type, id)
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise DecodeError(
                f"entity {entity_type!r} (id {id!r}): stored state is not valid JSON ({e}); "
                f"the row is left as it is: restore it from a backup or delete it"
            ) from e
        upgrades = etype.entity.upgrades
        while version < etype.state_version:
            step = upgrades.get(version)
            if step is None:
                raise DecodeError(
                    f"entity {entity_type!r} (id {id!r}): stored state has version {version} "
                    f"but there is no @upgrade(from_version={version}) to reach version "
                    f"{etype.state_version}; add one"
                )
            raw = step(raw)
            version += 1
        if version > etype.state_version:
            raise DecodeError(
                f"entity {entity_type!r} (id {id!r}): stored state has version {version}, "
                f"newer than this registry's {etype.state_version}; run the newer code"
            )
        try:
            return self._conv.structure(raw, etype.state)
        except (cattrs.BaseValidationError, TypeError, ValueError) as e:
            raise DecodeError(
                f"entity {entity_type!r} (id {id!r}): stored state does not structure into "
                f"{etype.state!r} ({e}); the row is left as it is"
            ) from e


def codec_for(registry: Registry) -> Codec:
    """The codec the PostgreSQL ecosystem uses for `registry`."""
    return FallbackCodec(registry)
