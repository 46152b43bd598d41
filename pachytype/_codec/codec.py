"""`Codec`: one registry's ids, messages, states, events and envelopes to
bytes and back (the rules are in `pachytype._codec`)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson
from cattrs import Converter

from pachytype._address import Address, Envelope, Ref, make_envelope, make_ref, unpack
from pachytype._codec.converter import Shape, Structure, build_converter, ref_class_of, spell
from pachytype._codec.explain import first_problem
from pachytype._codec.limits import (
    MAX_ID_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_STATE_BYTES,
    check_id_text,
    unencodable,
)
from pachytype._codec.tables import EntityCodec, entity_codec, id_fix, state_fix
from pachytype._errors import DecodeError, EncodeError, PachytypeError, ValueTooLargeError
from pachytype._names import snake_case
from pachytype._registry import Registry
from pachytype._versioning import upcast_raw, upgrade_raw

# The key of the converter and tables in `Registry.derived`.
_SHARED = "codec"

_MESSAGE_FIX = (
    "the message does not match the entity's message classes in this code; if a message "
    "class changed, keep old messages decodable (give new fields a default) or drain the "
    "mailbox before deploying"
)


class Codec:
    """Encodes and decodes everything a durable ecosystem stores, for one registry.

    >>> codec = Codec(REGISTRY)                                   # doctest: +SKIP
    >>> codec.decode_envelope(codec.encode_envelope(env)) == env  # doctest: +SKIP
    True
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._detailed: Converter | None = None
        # Building the converter's hooks is the cost of a codec (~10 ms an entity
        # type): codecs of one registry share the first one's, which depend on
        # nothing but the registry (a simulation builds a codec for every run).
        shared = registry.derived.get(_SHARED)
        if shared is None:
            self._fast = build_converter(self, detailed=False)
            self._entities: dict[str, EntityCodec] = {}
            self._entities.update({t.name: entity_codec(self._fast, t) for t in registry})
            registry.derived[_SHARED] = (self._fast, self._entities)
        else:
            self._fast, self._entities = shared

    # -- ids -----------------------------------------------------------------

    def encode_id(self, entity_type: str, id: Hashable) -> str:
        """The canonical text of `id` (the same id always gives the same text).

        Raises `EncodeError` for an id of the wrong type or whose text holds
        NUL or a lone surrogate, `ValueTooLargeError` over `MAX_ID_BYTES`.
        """
        codec = self._for(entity_type, id)
        try:
            text = codec.id.encode(id)
        except (TypeError, ValueError) as error:
            if "surrogates not allowed" in str(error):  # orjson, on an id made of fields
                raise EncodeError(entity_type, id, "id", unencodable(error)) from None
            raise EncodeError(
                entity_type,
                id,
                "id",
                f"expected {codec.id.expected}, got {type(id).__name__} ({error}); build "
                f"the address with the entity's ref",
            ) from None
        if not (text.isascii() and len(text) <= MAX_ID_BYTES) or "\x00" in text:
            check_id_text(entity_type, id, text)
        return text

    def decode_id(self, entity_type: str, text: str) -> Hashable:
        """The id whose canonical text is `text`."""
        codec = self._for(entity_type, None)
        try:
            return codec.id.decode(text)
        except Shape as error:
            raise DecodeError(
                entity_type, None, "id", "$", error.args[0], text, id_fix(codec)
            ) from None
        except Exception as error:
            raise DecodeError(
                entity_type,
                None,
                "id",
                "$",
                f"expected the canonical text of {codec.id.expected} ({error})",
                text,
                id_fix(codec),
            ) from None

    # -- messages ------------------------------------------------------------

    def encode_message(self, entity_type: str, message: object, id: Hashable = None) -> bytes:
        """`message` as `[tag, fields]` JSON bytes (`id`, of the receiver, only
        names it in errors).

        Raises `EncodeError` for a value the message's types do not allow or
        a string holding a lone surrogate, `ValueTooLargeError` over
        `MAX_MESSAGE_BYTES`.
        """
        codec = self._entities.get(entity_type) or self._for(entity_type, None)
        entry = codec.by_class.get(type(message))
        if entry is None:
            codec.etype.check_message(None, message)  # raises WrongMessageError
            raise AssertionError  # pragma: no cover (check_message raised)
        tag, unstructure = entry
        try:
            # A compact copy: orjson's result holds a 4 KiB allocation whatever
            # its length, and messages are kept (inboxes, recent messages).
            # `b"%b" %` copies it in about half the time `memoryview().tobytes()`
            # takes; a tuple is written as the same JSON array as a list, cheaper.
            data = b"%b" % orjson.dumps((tag, unstructure(message)))
        except (TypeError, PachytypeError, orjson.JSONEncodeError) as error:
            raise EncodeError(entity_type, id, f"{tag} message", unencodable(error)) from error
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueTooLargeError(
                entity_type,
                id,
                f"{tag} message",
                len(data),
                MAX_MESSAGE_BYTES,
                "send bulky data by reference (store it elsewhere, send its key) or split "
                "it into several messages",
            )
        return data

    def decode_message(self, entity_type: str, data: bytes, id: Hashable = None) -> object:
        """The message encoded in `data` (`id` only names the receiver in errors)."""
        codec = self._entities.get(entity_type) or self._for(entity_type, id)
        try:
            tag, fields = orjson.loads(data)
            cls, structure = codec.by_tag[tag]
            if type(fields) is dict:
                return structure(fields, cls)
        except Exception:  # anything wrong: the slow path below says what
            pass
        raise self._message_error(codec, entity_type, id, data)

    def _message_error(
        self, codec: EntityCodec, entity_type: str, id: Hashable, data: bytes
    ) -> DecodeError:
        """Why `data` is not a message of `entity_type` (checked again, step by step)."""
        try:
            raw = self._load(entity_type, id, "message", data, _MESSAGE_FIX)
        except DecodeError as error:
            return error
        if not (
            type(raw) is list and len(raw) == 2 and type(raw[0]) is str and type(raw[1]) is dict
        ):
            return DecodeError(
                entity_type,
                id,
                "message",
                "$",
                'expected ["MessageClass", {fields}]',
                raw,
                _MESSAGE_FIX,
            )
        tag, fields = raw
        found = codec.by_tag.get(tag)
        if found is None:
            return DecodeError(
                entity_type,
                id,
                "message",
                "$[0]",
                f"unknown message class, expected one of {' | '.join(sorted(codec.by_tag))}",
                tag,
                _MESSAGE_FIX,
            )
        return self._explain(entity_type, id, "message", fields, found[0], "$[1]", _MESSAGE_FIX)

    # -- state ---------------------------------------------------------------

    def encode_state(self, entity_type: str, state: object, id: Hashable = None) -> bytes:
        """`state` as JSON bytes, at the entity's current `state_version` (`id`
        only names the entity in errors).

        Raises `EncodeError` for a value the state type does not allow or a
        string holding a lone surrogate, `ValueTooLargeError` over
        `MAX_STATE_BYTES`.
        """
        codec = self._for(entity_type, id)
        try:
            data = orjson.dumps(codec.state_unstructure(state))
        except (TypeError, PachytypeError, orjson.JSONEncodeError) as error:
            raise EncodeError(
                entity_type,
                id,
                "state",
                f"{unencodable(error)}; the state must be a {spell(codec.state_type)}",
            ) from error
        if len(data) > MAX_STATE_BYTES:
            raise ValueTooLargeError(
                entity_type,
                id,
                "state",
                len(data),
                MAX_STATE_BYTES,
                "a state is written whole at every commit: keep bulky data in other "
                "entities (one per part) or outside pachytype, and keep its key here",
            )
        return data

    def encode_state_checked(self, entity_type: str, state: object, id: Hashable = None) -> bytes:
        """`encode_state`, and the bytes decode back: what cannot be read back
        must not be written (it would hold the entity at its next load).

        Raises as `encode_state` does, or as `decode_state` would on the bytes.
        """
        codec = self._entities.get(entity_type)
        if codec is not None:
            # The common case inline (this runs at every commit of a state):
            # `encode_state`, then `decode_state`'s fast path. Anything wrong
            # goes the long way below, which says what.
            try:
                data = orjson.dumps(codec.state_unstructure(state))
                if len(data) <= MAX_STATE_BYTES:
                    codec.state_structure(orjson.loads(data), codec.state_type)
                    return data
            except Exception:
                pass
        data = self.encode_state(entity_type, state, id)
        codec = self._entities[entity_type]  # encode_state found it
        try:
            codec.state_structure(orjson.loads(data), codec.state_type)
        except Exception:
            self.decode_state(entity_type, id, data, codec.etype.state_version)  # says why
            raise
        return data

    def decode_state(self, entity_type: str, id: Hashable, data: bytes, version: int) -> object:
        """The state stored as `data` with `version`: upgraded, then structured.

        Raises `StateVersionError` when the version cannot be brought to the
        code's, `DecodeError` when the (upgraded) data does not fit the state
        type. Either way nothing is changed: the caller holds the entity.
        """
        codec = self._entities.get(entity_type) or self._for(entity_type, id)
        if version == codec.etype.state_version:
            try:  # the common case: a state of the current version that fits
                return codec.state_structure(orjson.loads(data), codec.state_type)
            except Exception:  # anything wrong: the slow path below says what
                pass
        fix = state_fix(codec, version)
        raw = self._load(entity_type, id, "state", data, fix)
        raw = upgrade_raw(codec.etype.entity, id, raw, version)
        try:
            return codec.state_structure(raw, codec.state_type)
        except Exception as error:
            raise self._explain(entity_type, id, "state", raw, codec.state_type, "$", fix) from (
                error if isinstance(error, PachytypeError) else None
            )

    # -- events ----------------------------------------------------------------

    def encode_event(self, entity_type: str, event: object, id: Hashable = None) -> bytes:
        """`event` as `[tag, fields]` JSON bytes, or `[tag, fields, version]` when
        its class is past version 1 (see `pachytype._event_sourced`).

        Raises `EncodeError` for a value the event's types do not allow,
        `ValueTooLargeError` over `MAX_MESSAGE_BYTES`."""
        codec = self._for(entity_type, id)
        entry = codec.events_by_class.get(type(event))
        if entry is None:
            expected = " | ".join(sorted(codec.events_by_tag)) or "no event (not event-sourced)"
            raise EncodeError(
                entity_type,
                id,
                "event",
                f"{type(event).__qualname__} is not one of its event classes ({expected})",
            )
        tag, unstructure, version = entry
        try:
            fields = unstructure(event)
            # Compact, as a message's (events are kept in journals).
            data = b"%b" % orjson.dumps((tag, fields) if version == 1 else (tag, fields, version))
        except (TypeError, PachytypeError, orjson.JSONEncodeError) as error:
            raise EncodeError(entity_type, id, f"{tag} event", unencodable(error)) from error
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueTooLargeError(
                entity_type,
                id,
                f"{tag} event",
                len(data),
                MAX_MESSAGE_BYTES,
                "an event is stored forever and replayed: keep bulky data elsewhere and "
                "record its key in the event",
            )
        return data

    def decode_event(self, entity_type: str, id: Hashable, data: bytes) -> object:
        """The event stored as `data`: its fields upcast from their stored
        version by the entity's `@upcast` chain, then structured.

        Raises `DecodeError` (data that does not fit, an unknown event class)
        or `StateVersionError` (no upcaster chain from the stored version)."""
        codec = self._entities.get(entity_type) or self._for(entity_type, id)
        try:  # the common case: an event of the current version that fits
            raw = orjson.loads(data)
            cls, structure, current = codec.events_by_tag[raw[0]]
            stored = raw[2] if len(raw) == 3 else 1 if len(raw) == 2 else 0
            if stored == current and type(raw[1]) is dict:
                return structure(raw[1], cls)
        except Exception:  # anything wrong: the slow path below says what
            pass
        fix = (
            "stored events must keep decoding: when an event class changes shape, add "
            "@upcast(event=..., from_version=...) converting its stored form"
        )
        raw = self._load(entity_type, id, "event", data, fix)
        if not (
            type(raw) is list
            and len(raw) in (2, 3)
            and type(raw[0]) is str
            and type(raw[1]) is dict
            and (len(raw) == 2 or type(raw[2]) is int)
        ):
            raise DecodeError(
                entity_type, id, "event", "$", 'expected ["EventClass", {fields}]', raw, fix
            )
        tag, fields = raw[0], raw[1]
        version = raw[2] if len(raw) == 3 else 1
        found = codec.events_by_tag.get(tag)
        if found is None:
            raise DecodeError(
                entity_type,
                id,
                "event",
                "$[0]",
                f"unknown event class, expected one of {' | '.join(sorted(codec.events_by_tag))}",
                tag,
                "an event class was renamed or removed: keep the class (events are forever)",
            )
        cls, structure, _ = found
        fields = upcast_raw(codec.etype.entity, id, tag, fields, version)
        try:
            return structure(fields, cls)
        except Exception:
            raise self._explain(entity_type, id, "event", fields, cls, "$[1]", fix) from None

    # -- envelopes -----------------------------------------------------------

    def encode_envelope(self, envelope: Envelope[Any]) -> bytes:
        """A header line `[entity type, id text, delay]`, then the message bytes."""
        to, message, delay = unpack(envelope)
        name = to.entity_type
        header = orjson.dumps([name, self.encode_id(name, to.id), delay])
        return header + b"\n" + self.encode_message(name, message)

    def decode_envelope(self, data: bytes) -> Envelope[Any]:
        """The envelope encoded in `data`."""
        header, _, body = bytes(data).partition(b"\n")
        try:
            name, text, delay = orjson.loads(header)
            if not (type(name) is str and type(text) is str and type(delay) in (int, float)):
                raise ValueError("wrong types")
        except (ValueError, TypeError):
            raise DecodeError(
                "<unknown>",
                None,
                "envelope",
                "header",
                "expected a first line [entity type, id text, delay seconds]",
                header,
                "these bytes were not written by Codec.encode_envelope",
            ) from None
        id = self.decode_id(name, text)
        message = self.decode_message(name, body, id)
        return make_envelope(make_ref(Ref, name, id), message, float(delay))

    @staticmethod
    def envelope_target(data: bytes) -> tuple[str, str]:
        """`(entity type, id text)` of an encoded envelope, without decoding its message."""
        header, _, _ = bytes(data).partition(b"\n")
        name, text, _delay = orjson.loads(header)
        return str(name), str(text)

    # -- addresses (converter hooks) -------------------------------------------

    def _unstructure_address(self, address: Address[Any]) -> list[str]:
        name, id = address._key
        codec = self._entities.get(name)
        try:
            text = codec.id.encode(id)  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            return [name, self.encode_id(name, id)]  # raises, naming what is wrong
        if not (text.isascii() and len(text) <= MAX_ID_BYTES) or "\x00" in text:
            check_id_text(name, id, text)
        return [name, text]

    def _address_structure(self, type_: Any, _converter: Converter) -> Structure:
        """The hook for one declared address type (`Address[M]`, `ClientRef`)."""
        ref_class = ref_class_of(type_)
        expected = snake_case(ref_class.__name__.removesuffix("Ref"))
        entities = self._entities  # filled in by __init__ before any decoding

        def structure(raw: object, _type: object) -> Address[Any]:
            if not (type(raw) is list and len(raw) == 2):
                raise Shape("an address [entity type, id text]", raw)
            name, text = raw
            codec = entities.get(name) if type(name) is str else None
            if codec is None:
                raise Shape(f"an entity type of {self.registry.package}", name)
            if ref_class is not Ref and name != expected:
                raise Shape(f"an address of the entity {ref_class.__name__} refers to", name)
            try:
                if type(text) is not str:
                    raise TypeError("not a str")
                id = codec.id.decode(text)
            except Exception as error:
                raise Shape(f"an id of {name!r} ({codec.id.expected})", text) from error
            return make_ref(ref_class, name, id)

        return structure

    # -- envelopes inside messages and states (converter hooks) ----------------

    def _unstructure_envelope(self, envelope: Envelope[Any]) -> list[Any]:
        to, message, delay = unpack(envelope)
        name = to.entity_type
        codec = self._for(name, to.id)
        entry = codec.by_class.get(type(message))
        if entry is None:
            codec.etype.check_message(to.id, message)  # raises WrongMessageError
        tag, unstructure = codec.by_class[type(message)]
        return [name, self.encode_id(name, to.id), delay, [tag, unstructure(message)]]

    def _structure_envelope(self, raw: object, _type: object) -> Envelope[Any]:
        if not (type(raw) is list and len(raw) == 4):
            raise Shape("an envelope [entity type, id text, delay, [tag, fields]]", raw)
        name, text, delay, body = raw
        codec = self._entities.get(name) if type(name) is str else None
        if codec is None:
            raise Shape(f"an entity type of {self.registry.package}", name)
        if type(delay) not in (int, float):
            raise Shape("a delay in seconds", delay)
        try:
            if type(text) is not str:
                raise TypeError("not a str")
            id = codec.id.decode(text)
        except Exception as error:
            raise Shape(f"an id of {name!r} ({codec.id.expected})", text) from error
        if not (type(body) is list and len(body) == 2 and type(body[1]) is dict):
            raise Shape('a message ["Class", {fields}]', body)
        found = codec.by_tag.get(body[0]) if type(body[0]) is str else None
        if found is None:
            raise Shape(f"a message class of {name!r}", body[0])
        cls, structure = found
        return make_envelope(make_ref(Ref, name, id), structure(body[1], cls), float(delay))

    # -- internals -----------------------------------------------------------

    def _for(self, entity_type: str, id: Hashable) -> EntityCodec:
        codec = self._entities.get(entity_type)
        if codec is None:
            self.registry.get(entity_type, id)  # raises UnknownEntityError
            raise AssertionError  # pragma: no cover
        return codec

    def _load(self, entity_type: str, id: Hashable, what: str, data: bytes, fix: str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise DecodeError(
                entity_type, id, what, "$", f"not JSON ({error})", bytes(data), fix
            ) from None

    def _explain(
        self,
        entity_type: str,
        id: Hashable,
        what: str,
        raw: object,
        type_: Any,
        root: str,
        fix: str,
    ) -> DecodeError:
        """Structure `raw` again with detailed validation; the first problem found."""
        if self._detailed is None:
            self._detailed = build_converter(self, detailed=True)
        try:
            self._detailed.structure(raw, type_)
        except Exception as error:
            path, problem, value = first_problem(error, [], raw)
            return DecodeError(entity_type, id, what, root + path, problem, value, fix)
        return DecodeError(entity_type, id, what, root, "does not decode", raw, fix)
