"""The codec: ids, messages, states, addresses and envelopes to bytes and back.

Design note. One `Codec` per registry, built on one cattrs converter with
the orjson backend. Rules:

- **Only registered types are built.** Decoding starts from a type the
  registry names (an entity's message classes, its state type, its id type)
  and follows the declared field types; a tag is looked up in a table, never
  imported or evaluated. Nothing is pickled.
- **Strict shapes.** `int` fields take JSON integers only (not `"5"`, not
  `true`), `str` takes strings, `float` takes numbers, `bool` takes
  booleans; unknown keys are refused. A mismatch is a `DecodeError` naming
  the entity, the id, the path (`$.to[1]`) and the bad value.
- **Messages are a tagged union**: `["Deposit", {"amount": 5}]`, the tag
  being the class name (unique per entity: the generator refuses two
  message classes with the same snake_case name). A union of attrs classes
  inside a message or state is tagged the same way.
- **Ids are canonical text** (they are database keys): a `str` id is
  itself, an `int` its decimal digits, a `UUID` its lowercase hyphenated
  form, an attrs id the compact JSON of its fields with sorted keys. The
  same id always gives the same text; decoding refuses non-canonical text.
  NewTypes are their base type.
- **Addresses** are `[entity type, id text]`; decoding looks the entity type
  up in the registry and rebuilds a `Ref`. A narrowed `Address[Pong]` whose
  `Pong` was imported only under `TYPE_CHECKING` needs no resolution: see
  `pachytype._hints`.
- **Envelopes inside a message or a state** (a worker's pending request,
  an inbox's answer) are `[entity type, id text, delay, [tag, fields]]`,
  the message encoded by its target entity's table.
- **Envelopes** are a one-line JSON header `[entity type, id text, delay
  seconds]`, a newline, then the message bytes, so a store or a router
  reads the target (`envelope_target`) without decoding the body (orjson
  never writes a raw newline).
- **State** is encoded at the entity's current `state_version`; decoding
  takes the stored version, runs the `@upgrade` chain over the raw data
  (`pachytype._versioning`) and then structures it.
- **Bad values are refused here, at encoding**, so at `send` (or, for mail
  an activation sends and states it returns, as that activation's failure:
  a dead letter), never in a store, whatever the ecosystem: an id text
  holding NUL (PostgreSQL cannot store it in text) or a lone surrogate
  (not Unicode: no UTF-8 encoding, SQLite and PostgreSQL refuse it), any
  string holding a lone surrogate, an id text over `MAX_ID_BYTES`, a
  message over `MAX_MESSAGE_BYTES`, a state over `MAX_STATE_BYTES` (sizes
  of the UTF-8/JSON encoding). The error is an `EncodeError` naming the
  entity and the id (`ValueTooLargeError` for sizes).

Speed: the hot path uses a converter without detailed validation; only when
decoding fails is the data structured again with detailed validation, to
say where and what.
"""

from __future__ import annotations

import typing
import uuid
from collections import abc
from collections.abc import Callable, Hashable
from typing import Any, Final, NewType

import attrs
import orjson
from attrs import frozen
from cattrs import Converter
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn_from_attrs, make_dict_unstructure_fn_from_attrs
from cattrs.preconf.orjson import make_converter

from pachytype._address import Address, Envelope, Ref, make_envelope, make_ref, unpack
from pachytype._errors import (
    DecodeError,
    EncodeError,
    PachytypeError,
    UnknownEntityError,
    ValueTooLargeError,
)
from pachytype._hints import field_types, unresolved_names
from pachytype._names import snake_case
from pachytype._registry import EntityType, Registry
from pachytype._versioning import upcast_raw, upgrade_raw

MAX_ID_BYTES: Final = 1024
"""The longest id, in bytes of its canonical text (UTF-8). Ids are database
keys, repeated in every message row and index entry (PostgreSQL refuses
index entries over about 2.7 KB); a longer natural key should be hashed."""

MAX_MESSAGE_BYTES: Final = 1024 * 1024
"""The largest encoded message (1 MiB of JSON). Messages are copied through
mailboxes, batches and dead letters; bulky data should travel by reference."""

MAX_STATE_BYTES: Final = 16 * 1024 * 1024
"""The largest encoded state (16 MiB of JSON). A state is written whole at
every commit of its entity: a state near this size is already slow."""

Unstructure = Callable[[Any], Any]
Structure = Callable[[Any, Any], Any]

_MESSAGE_FIX = (
    "the message does not match the entity's message classes in this code; if a message "
    "class changed, keep old messages decodable (give new fields a default) or drain the "
    "mailbox before deploying"
)


class _Shape(ValueError):
    """A leaf value of the wrong JSON type (strict primitive hooks)."""

    def __init__(self, expected: str, value: object) -> None:
        self.expected = expected
        self.value = value
        super().__init__(f"expected {expected}")


@frozen
class _IdCodec:
    encode: Callable[[Hashable], str]
    decode: Callable[[str], Hashable]
    expected: str


@frozen
class _EntityCodec:
    etype: EntityType
    id: _IdCodec
    by_class: dict[type, tuple[str, Unstructure]]
    by_tag: dict[str, tuple[type, Structure]]
    state_type: Any
    state_unstructure: Unstructure
    state_structure: Structure
    events_by_class: dict[type, tuple[str, Unstructure, int]]
    events_by_tag: dict[str, tuple[type, Structure, int]]


class Codec:
    """Encodes and decodes everything a durable ecosystem stores, for one registry.

    >>> codec = Codec(REGISTRY)                                   # doctest: +SKIP
    >>> codec.decode_envelope(codec.encode_envelope(env)) == env  # doctest: +SKIP
    True
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._fast = _converter(self, detailed=False)
        self._detailed: Converter | None = None
        self._entities: dict[str, _EntityCodec] = {}
        self._entities.update({t.name: self._entity(t) for t in registry})

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
                raise EncodeError(entity_type, id, "id", _unencodable(error)) from None
            raise EncodeError(
                entity_type,
                id,
                "id",
                f"expected {codec.id.expected}, got {type(id).__name__} ({error}); build "
                f"the address with the entity's ref",
            ) from None
        if not (text.isascii() and len(text) <= MAX_ID_BYTES) or "\x00" in text:
            _check_id_text(entity_type, id, text)
        return text

    def decode_id(self, entity_type: str, text: str) -> Hashable:
        """The id whose canonical text is `text`."""
        codec = self._for(entity_type, None)
        try:
            return codec.id.decode(text)
        except _Shape as error:
            raise DecodeError(
                entity_type, None, "id", "$", error.args[0], text, _id_fix(codec)
            ) from None
        except Exception as error:
            raise DecodeError(
                entity_type,
                None,
                "id",
                "$",
                f"expected the canonical text of {codec.id.expected} ({error})",
                text,
                _id_fix(codec),
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
            data = memoryview(orjson.dumps([tag, unstructure(message)])).tobytes()
        except (TypeError, PachytypeError, orjson.JSONEncodeError) as error:
            raise EncodeError(entity_type, id, f"{tag} message", _unencodable(error)) from error
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
        self, codec: _EntityCodec, entity_type: str, id: Hashable, data: bytes
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
                f"{_unencodable(error)}; the state must be a {_spell(codec.state_type)}",
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
        data = self.encode_state(entity_type, state, id)
        codec = self._entities[entity_type]  # encode_state found it
        try:  # decode_state's fast path, inline: this runs at every commit of a state
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
        fix = _state_fix(codec, version)
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
            data = memoryview(  # compact, as a message's (events are kept in journals)
                orjson.dumps([tag, fields] if version == 1 else [tag, fields, version])
            ).tobytes()
        except (TypeError, PachytypeError, orjson.JSONEncodeError) as error:
            raise EncodeError(entity_type, id, f"{tag} event", _unencodable(error)) from error
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
            _check_id_text(name, id, text)
        return [name, text]

    def _address_structure(self, type_: Any, _converter: Converter) -> Structure:
        """The hook for one declared address type (`Address[M]`, `ClientRef`)."""
        ref_class = _ref_class(type_)
        expected = snake_case(ref_class.__name__.removesuffix("Ref"))
        entities = self._entities  # filled in by __init__ before any decoding

        def structure(raw: object, _type: object) -> Address[Any]:
            if not (type(raw) is list and len(raw) == 2):
                raise _Shape("an address [entity type, id text]", raw)
            name, text = raw
            codec = entities.get(name) if type(name) is str else None
            if codec is None:
                raise _Shape(f"an entity type of {self.registry.package}", name)
            if ref_class is not Ref and name != expected:
                raise _Shape(f"an address of the entity {ref_class.__name__} refers to", name)
            try:
                if type(text) is not str:
                    raise TypeError("not a str")
                id = codec.id.decode(text)
            except Exception as error:
                raise _Shape(f"an id of {name!r} ({codec.id.expected})", text) from error
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
            raise _Shape("an envelope [entity type, id text, delay, [tag, fields]]", raw)
        name, text, delay, body = raw
        codec = self._entities.get(name) if type(name) is str else None
        if codec is None:
            raise _Shape(f"an entity type of {self.registry.package}", name)
        if type(delay) not in (int, float):
            raise _Shape("a delay in seconds", delay)
        try:
            if type(text) is not str:
                raise TypeError("not a str")
            id = codec.id.decode(text)
        except Exception as error:
            raise _Shape(f"an id of {name!r} ({codec.id.expected})", text) from error
        if not (type(body) is list and len(body) == 2 and type(body[1]) is dict):
            raise _Shape('a message ["Class", {fields}]', body)
        found = codec.by_tag.get(body[0]) if type(body[0]) is str else None
        if found is None:
            raise _Shape(f"a message class of {name!r}", body[0])
        cls, structure = found
        return make_envelope(make_ref(Ref, name, id), structure(body[1], cls), float(delay))

    # -- internals -----------------------------------------------------------

    def _for(self, entity_type: str, id: Hashable) -> _EntityCodec:
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
            self._detailed = _converter(self, detailed=True)
        try:
            self._detailed.structure(raw, type_)
        except Exception as error:
            path, problem, value = _first_problem(error, [], raw)
            return DecodeError(entity_type, id, what, root + path, problem, value, fix)
        return DecodeError(entity_type, id, what, root, "does not decode", raw, fix)

    def _entity(self, etype: EntityType) -> _EntityCodec:
        converter = self._fast
        state_type = type(None) if etype.state is None else etype.state
        by_class: dict[type, tuple[str, Unstructure]] = {}
        by_tag: dict[str, tuple[type, Structure]] = {}
        for cls in etype.messages:
            _check_resolved(etype, cls)
            tag = cls.__name__
            if tag in by_tag:
                raise TypeError(
                    f"entity {etype.name!r}: two message classes are named {tag} "
                    f"({by_tag[tag][0].__module__} and {cls.__module__}); rename one"
                )
            by_class[cls] = (tag, converter.get_unstructure_hook(cls))
            by_tag[tag] = (cls, converter.get_structure_hook(cls))
        events_by_class: dict[type, tuple[str, Unstructure, int]] = {}
        events_by_tag: dict[str, tuple[type, Structure, int]] = {}
        for cls in etype.events:
            _check_resolved(etype, cls)
            tag = cls.__name__
            if tag in events_by_tag:
                raise TypeError(
                    f"entity {etype.name!r}: two event classes are named {tag}; rename one"
                )
            version = etype.entity.event_version(cls)  # type: ignore[attr-defined]
            events_by_class[cls] = (tag, converter.get_unstructure_hook(cls), version)
            events_by_tag[tag] = (cls, converter.get_structure_hook(cls), version)
        return _EntityCodec(
            etype=etype,
            events_by_class=events_by_class,
            events_by_tag=events_by_tag,
            id=self._id_codec(etype),
            by_class=by_class,
            by_tag=by_tag,
            state_type=state_type,
            state_unstructure=converter.get_unstructure_hook(state_type),
            state_structure=converter.get_structure_hook(state_type),
        )

    def _id_codec(self, etype: EntityType) -> _IdCodec:
        base = _supertype(etype.id_type)
        if base is str:
            return _IdCodec(_str_id, _decode_str_id, "str")
        if base is int:
            return _IdCodec(_int_id, _decode_int_id, "int")
        if base is uuid.UUID:
            return _IdCodec(_uuid_id, _decode_uuid_id, "UUID")
        if base in (object, Any, Hashable):
            return _IdCodec(_json_id, _decode_json_id, "str, int or bool")
        converter = self._fast
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

        return _IdCodec(encode, decode, _spell(base))


_SURROGATE_FIX: Final = (
    "a lone surrogate is not Unicode text and has no UTF-8 encoding (it usually comes "
    "from bytes decoded with errors='surrogateescape', e.g. file names): decode such "
    "bytes strictly, or carry them as hex or base64"
)


def _state_fix(codec: _EntityCodec, version: int) -> str:
    """What to do about a stored state (of `version`) that does not decode."""
    current = codec.etype.state_version
    if version < current:
        return (
            f"the @upgrade chain from version {version} to {current} produced data that "
            f"does not fit {_spell(codec.state_type)}: fix the upgraders"
        )
    return (
        f"the stored state (version {version}) does not fit "
        f"{_spell(codec.state_type)}: if the state's shape changed, bump "
        f"state_version to {current + 1} and add @upgrade(from_version={current}) "
        f"converting the old shape"
    )


def _unencodable(error: BaseException) -> str:
    """What an encoding failure means, and what to do about a lone surrogate."""
    text = str(error)
    if "surrogates not allowed" in text:
        return f"a str in it holds a lone surrogate; {_SURROGATE_FIX}"
    return text


def storable_text(text: str) -> str:
    """`text` (an error message, a traceback) as every store can keep it: lone
    surrogates (no UTF-8 encoding) and NUL (refused by PostgreSQL's text) are
    written as the escapes `\\udcff` and `\\x00`, so they stay visible."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _check_id_text(entity_type: str, id: Hashable, text: str) -> None:
    """Refuse an id text no store can keep as a key (see the module's rules)."""
    at = text.find("\x00")
    if at >= 0:
        raise EncodeError(
            entity_type,
            id,
            "id",
            f"its text holds NUL ('\\x00', at index {at}), which PostgreSQL cannot store "
            f"in text and no ecosystem accepts in an id (ids are database keys); remove it, "
            f"or carry binary ids as hex",
        )
    try:
        size = len(text.encode())
    except UnicodeEncodeError as error:
        raise EncodeError(
            entity_type,
            id,
            "id",
            f"its text holds the lone surrogate {text[error.start]!r} at index "
            f"{error.start}; {_SURROGATE_FIX}",
        ) from None
    if size > MAX_ID_BYTES:
        raise ValueTooLargeError(
            entity_type,
            id,
            "id",
            size,
            MAX_ID_BYTES,
            "ids are database keys: use a shorter id (e.g. a hash of the long value, "
            "keeping the value itself in the state)",
        )


def _id_fix(codec: _EntityCodec) -> str:
    return (
        f"ids of {codec.etype.name!r} are {codec.id.expected}, stored as the text "
        f"Codec.encode_id writes; this id text was not written by this code"
    )


def _supertype(tp: Any) -> Any:
    while isinstance(tp, NewType):
        tp = tp.__supertype__
    return tp


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


def _check_resolved(etype: EntityType, cls: type) -> None:
    if not attrs.has(cls):
        raise TypeError(
            f"entity {etype.name!r}: message class {cls.__qualname__} is not an attrs "
            f"class; decorate it with @frozen"
        )


def _spell(tp: Any) -> str:
    """A type as people write it: `Full | Vacant`, `tuple[str, ...]`."""
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, _UnionType):
        return " | ".join(_spell(a) for a in args)
    if origin is not None and args:
        return f"{_spell(origin)}[{', '.join(_spell(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


# -- the converter -----------------------------------------------------------


def _converter(codec: Codec, *, detailed: bool) -> Converter:
    converter = make_converter(detailed_validation=detailed, forbid_extra_keys=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(type(None), _structure_none)
    converter.register_unstructure_hook_func(_is_address, codec._unstructure_address)
    converter.register_structure_hook_factory(_is_address, codec._address_structure)
    converter.register_unstructure_hook_func(_is_envelope, codec._unstructure_envelope)
    converter.register_structure_hook_func(_is_envelope, codec._structure_envelope)
    converter.register_structure_hook_factory(_is_collection, _collection_structure)
    converter.register_structure_hook_factory(_is_int_keyed, _int_keyed_structure)
    converter.register_unstructure_hook_factory(_is_tagged_union, _tagged_unstructure)
    converter.register_structure_hook_factory(_is_tagged_union, _tagged_structure)
    converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure)
    converter.register_structure_hook_factory(attrs.has, _attrs_structure)
    return converter


def _structure_int(value: object, _type: object) -> int:
    if type(value) is not int:
        raise _Shape("an int", value)
    return value


def _structure_str(value: object, _type: object) -> str:
    if type(value) is not str:
        raise _Shape("a str", value)
    return value


def _structure_float(value: object, _type: object) -> float:
    if type(value) is not float and type(value) is not int:
        raise _Shape("a float", value)
    return float(value)


def _structure_bool(value: object, _type: object) -> bool:
    if type(value) is not bool:
        raise _Shape("a bool", value)
    return value


class _Item(ValueError):
    """Item `index` of a list failed to structure (wraps the cause)."""

    def __init__(self, index: int, error: Exception) -> None:
        self.index = index
        self.error = error
        super().__init__(f"item {index}: {error}")


_COLLECTIONS: dict[Any, Callable[[Any], Any]] = {
    tuple: tuple,
    list: list,
    set: set,
    frozenset: frozenset,
    abc.Sequence: tuple,
    abc.MutableSequence: list,
    abc.Set: frozenset,
    abc.MutableSet: set,
}


def _is_collection(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin not in _COLLECTIONS:
        return False
    args = typing.get_args(tp)
    return bool(args) and args != ((),)


def _collection_structure(tp: Any, converter: Converter) -> Structure:
    """Collections from JSON lists only (a string is not a tuple of chars)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_tuple_structure(tp, converter)
    build = _COLLECTIONS[typing.get_origin(tp)]
    item_type = typing.get_args(tp)[0]
    item = converter.get_structure_hook(item_type)

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not list:
            raise _Shape(f"a list of {_spell(item_type)}", raw)
        try:
            return build([item(x, item_type) for x in raw])
        except Exception:
            for index, x in enumerate(raw):
                try:
                    item(x, item_type)
                except Exception as error:
                    raise _Item(index, error) from error
            raise

    return structure


def _fixed_tuple_structure(tp: Any, converter: Converter) -> Structure:
    """`tuple[A, B]`: a list of exactly that many items, each of its type."""
    types_ = typing.get_args(tp)
    hooks = [converter.get_structure_hook(t) for t in types_]

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not list or len(raw) != len(types_):
            raise _Shape(f"a list of {len(types_)} items ({_spell(tp)})", raw)
        items = []
        for index, (hook, item_type, x) in enumerate(zip(hooks, types_, raw, strict=True)):
            try:
                items.append(hook(x, item_type))
            except Exception as error:
                raise _Item(index, error) from error
        return tuple(items)

    return structure


def _structure_none(value: object, _type: object) -> None:
    if value is not None:
        raise _Shape("null", value)


def _is_int_keyed(tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    return origin in (dict, abc.Mapping) and len(args) == 2 and _supertype(args[0]) is int


def _int_keyed_structure(tp: Any, converter: Converter) -> Structure:
    """`dict[int, V]`: JSON keys are strings, so ints travel as canonical digits."""
    value_type = typing.get_args(tp)[1]
    value = converter.get_structure_hook(value_type)

    def structure(raw: Any, _type: Any) -> Any:
        if type(raw) is not dict:
            raise _Shape(f"an object of {_spell(tp)}", raw)
        result = {}
        for key, item in raw.items():
            number = int(key) if type(key) is str and key.lstrip("-").isdigit() else None
            if number is None or str(number) != key:
                raise _Shape("an int key (canonical digits)", key)
            result[number] = value(item, value_type)
        return result

    return structure


def _ref_class(tp: object) -> type[Ref[Any, Any]]:
    """The class to rebuild an address as: a generated ref class (`ClientRef`) when
    the field names one, so its methods work; a plain `Ref` for `Address[M]`."""
    if isinstance(tp, type) and issubclass(tp, Ref) and tp is not Ref:
        return tp
    return Ref


def _is_address(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, Address)


def _is_envelope(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, Envelope)


def _resolved_attributes(cls: type) -> list[attrs.Attribute[Any]]:
    hints = field_types(cls)
    for name, tp in hints.items():
        missing = unresolved_names(tp)
        if missing:
            raise TypeError(
                f"field {name!r} of {cls.__module__}.{cls.__qualname__}: its type names "
                f"{', '.join(missing)}, which no module of the package defines at run "
                f"time (imported only under TYPE_CHECKING from outside the package?); "
                f"import it at run time"
            )
    return [a.evolve(type=hints[a.name]) for a in attrs.fields(cls)]


def _attrs_unstructure(cls: Any, converter: Converter) -> Unstructure:
    return make_dict_unstructure_fn_from_attrs(_resolved_attributes(cls), cls, converter)


def _attrs_structure(cls: Any, converter: Converter) -> Structure:
    return make_dict_structure_fn_from_attrs(_resolved_attributes(cls), cls, converter)


def _union_members(tp: Any) -> tuple[list[type], bool] | None:
    """The attrs classes of a union of two or more of them (and whether None is in it)."""
    if typing.get_origin(tp) not in (typing.Union, _UnionType):
        return None
    args = typing.get_args(tp)
    classes = [a for a in args if a is not type(None)]
    if len(classes) < 2 or not all(isinstance(a, type) and attrs.has(a) for a in classes):
        return None
    return classes, len(classes) != len(args)


_UnionType = type(int | str)


def _is_tagged_union(tp: Any) -> bool:
    return _union_members(tp) is not None


def _tags(tp: Any) -> tuple[dict[str, type], bool]:
    members = _union_members(tp)
    assert members is not None
    classes, optional = members
    tags = {c.__name__: c for c in classes}
    if len(tags) != len(classes):
        raise TypeError(f"{tp!r}: two classes of the union have the same name; rename one")
    return tags, optional


def _tagged_unstructure(tp: Any, converter: Converter) -> Unstructure:
    tags, _ = _tags(tp)
    table = {c: (tag, converter.get_unstructure_hook(c)) for tag, c in tags.items()}

    def unstructure(value: Any) -> Any:
        if value is None:
            return None
        tag, fn = table[type(value)]
        return [tag, fn(value)]

    return unstructure


def _tagged_structure(tp: Any, converter: Converter) -> Structure:
    tags, optional = _tags(tp)
    table = {tag: (c, converter.get_structure_hook(c)) for tag, c in tags.items()}
    expected = " | ".join(sorted(tags))

    def structure(raw: Any, _type: Any) -> Any:
        if raw is None and optional:
            return None
        if not (type(raw) is list and len(raw) == 2 and type(raw[0]) is str):
            raise _Shape(f'["Class", {{fields}}] for {expected}', raw)
        found = table.get(raw[0])
        if found is None:
            raise _Shape(f"one of the classes {expected}", raw[0])
        cls, fn = found
        try:
            return fn(raw[1], cls)
        except Exception as error:
            raise _Item(1, error) from error

    return structure


# -- explaining failures -----------------------------------------------------


def _first_problem(
    error: BaseException, path: list[str | int], raw: object
) -> tuple[str, str, object]:
    """`(path, problem, bad value)` of the first leaf of a cattrs error tree."""
    if isinstance(error, ClassValidationError):
        with_names, others = error.group_exceptions()
        for inner, name_note in with_names:
            return _first_problem(inner, [*path, name_note.name], raw)
        for inner in others:
            return _first_problem(inner, path, raw)
    if isinstance(error, IterableValidationError):
        with_index, others = error.group_exceptions()
        for inner, index_note in with_index:
            return _first_problem(inner, [*path, index_note.index], raw)
        for inner in others:
            return _first_problem(inner, path, raw)
    if isinstance(error, _Item):
        return _first_problem(error.error, [*path, error.index], raw)
    spelled = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
    if isinstance(error, _Shape):
        return spelled, f"expected {error.expected}", error.value
    if isinstance(error, ForbiddenExtraKeysError):
        return spelled, f"unknown field(s) {', '.join(sorted(error.extra_fields))}", _at(raw, path)
    if isinstance(error, KeyError) and path:
        return spelled, "required field missing", _at(raw, path[:-1])
    if isinstance(error, DecodeError | UnknownEntityError):
        return spelled, str(error), _at(raw, path)
    return spelled, f"{type(error).__name__}: {error}", _at(raw, path)


def _at(raw: object, path: list[str | int]) -> object:
    for step in path:
        in_list = isinstance(raw, list) and isinstance(step, int) and 0 <= step < len(raw)
        if in_list or (isinstance(raw, dict) and step in raw):
            raw = raw[step]  # type: ignore[index]
        else:
            return raw
    return raw
