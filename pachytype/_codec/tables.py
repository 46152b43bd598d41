"""Per entity type, the tables the codec looks things up in: message and event
classes by tag and by class, the state type, the id spelling."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen
from cattrs import Converter

from pachytype._codec.converter import Structure, Unstructure, spell
from pachytype._codec.ids import IdCodec, id_codec
from pachytype._registry import EntityType


@frozen
class EntityCodec:
    """The tables of one entity type."""

    etype: EntityType
    id: IdCodec
    by_class: dict[type, tuple[str, Unstructure]]
    by_tag: dict[str, tuple[type, Structure]]
    state_type: Any
    state_unstructure: Unstructure
    state_structure: Structure
    events_by_class: dict[type, tuple[str, Unstructure, int]]
    events_by_tag: dict[str, tuple[type, Structure, int]]


def entity_codec(converter: Converter, etype: EntityType) -> EntityCodec:
    """The tables of `etype`, from the hooks of `converter` (the fast one)."""
    state_type = type(None) if etype.state is None else etype.state
    by_class: dict[type, tuple[str, Unstructure]] = {}
    by_tag: dict[str, tuple[type, Structure]] = {}
    for cls in etype.messages:
        check_resolved(etype, cls)
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
        check_resolved(etype, cls)
        tag = cls.__name__
        if tag in events_by_tag:
            raise TypeError(f"entity {etype.name!r}: two event classes are named {tag}; rename one")
        version = etype.entity.event_version(cls)  # type: ignore[attr-defined]
        events_by_class[cls] = (tag, converter.get_unstructure_hook(cls), version)
        events_by_tag[tag] = (cls, converter.get_structure_hook(cls), version)
    return EntityCodec(
        etype=etype,
        events_by_class=events_by_class,
        events_by_tag=events_by_tag,
        id=id_codec(converter, etype),
        by_class=by_class,
        by_tag=by_tag,
        state_type=state_type,
        state_unstructure=converter.get_unstructure_hook(state_type),
        state_structure=converter.get_structure_hook(state_type),
    )


def state_fix(codec: EntityCodec, version: int) -> str:
    """What to do about a stored state (of `version`) that does not decode."""
    current = codec.etype.state_version
    if version < current:
        return (
            f"the @upgrade chain from version {version} to {current} produced data that "
            f"does not fit {spell(codec.state_type)}: fix the upgraders"
        )
    return (
        f"the stored state (version {version}) does not fit "
        f"{spell(codec.state_type)}: if the state's shape changed, bump "
        f"state_version to {current + 1} and add @upgrade(from_version={current}) "
        f"converting the old shape"
    )


def id_fix(codec: EntityCodec) -> str:
    """What to do about a stored id text that does not decode."""
    return (
        f"ids of {codec.etype.name!r} are {codec.id.expected}, stored as the text "
        f"Codec.encode_id writes; this id text was not written by this code"
    )


def check_resolved(etype: EntityType, cls: type) -> None:
    """Refuse a message or event class the converter cannot build (not attrs)."""
    if not attrs.has(cls):
        raise TypeError(
            f"entity {etype.name!r}: message class {cls.__qualname__} is not an attrs "
            f"class; decorate it with @frozen"
        )
