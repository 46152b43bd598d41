"""The schema: a canonical description of a package's entities, and its fingerprints.

Design note. One description, computed two ways that must agree:

- statically, by the generator, from its model (`codegen.fingerprint.schema`
  builds a `Schema` from the libcst model without importing user code);
- at run time, from the live classes a registry names (`live_schema`).

`fingerprint(schema)` hashes it (sha256 of compact JSON with sorted keys);
the generator writes that into `refs.py` as `REGISTRY.fingerprint`, and
`check_registry` recomputes it from the live classes when an ecosystem
resolves the registry: if someone edited an entity and forgot `pachytype
generate`, the ecosystem refuses to open (`StaleRegistryError`). The check
runs once per registry (it is cached on the registry's resolution), costs
a walk over the entity classes (microseconds per class) and is skipped for
hand-written registries whose fingerprint is empty or all zeros, and when
a type argument of `Address[...]` names something imported only for mypy
from outside the package (its module cannot be known at run time, so its
spelling cannot be compared: better no check than a false alarm).

What the description holds, per entity: its type name, class, canonical id
type, message classes (sorted) and state type, and `state_version`; for an
event-sourced entity, its event classes with their versions (the key is
absent otherwise, so other entities' fingerprints are unchanged); and,
for every class of the package reachable from those, whether it is an attrs
class and its `__init__` fields (name, canonical type, kw_only, whether it
has a default), in init order, and for an enum its members with their
values (stored data holds enum values, so renaming a value matters).
Canonical types are fully qualified with aliases and NewTypes expanded
(`tuple[examples.tcp.stream.Segment, ...]`, `pachytype.Address[...]`,
`X | None`), the way `codegen.typeexpr.canonical` spells them. Renaming a
NewType or an alias, reordering the message union or changing a default's
value does not change the fingerprint; renaming a class or a field, changing
a type, an enum value or whether a field has a default, or bumping
`state_version` does.

The schema lock (`pachytype lock`) keeps, per entity and state version, the
fingerprint of the state's structure (`state_fingerprint`: the state type
and every package class reachable from it) and of the message union
(`messages_fingerprint`), both computed here from a `Schema`, so static and
run-time views give the same numbers (`lock_format=1` reproduces what
format 1 locks hashed, so old lock files are still compared correctly).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NewType

import attrs
from attrs import frozen

from pachytype._address import Address
from pachytype._errors import StaleRegistryError
from pachytype._hints import Unresolved, field_types

if TYPE_CHECKING:
    from pachytype._registry import EntityType, Registry


@frozen
class FieldSchema:
    """One `__init__` parameter of a class: attribute name, canonical type, kw_only,
    and whether it has a default (data lacking the field decodes only if it has)."""

    name: str
    type: str
    kw_only: bool
    default: bool


@frozen
class MemberSchema:
    """One member of an enum class: its name and its value, spelled as a literal
    (`"red"`, `2`). Stored data holds the value, so decoding depends on it."""

    name: str
    value: str


@frozen
class ClassSchema:
    """A class of the package that messages, states or ids are made of."""

    name: str
    """Fully qualified: `examples.bank.account.AccountState`."""
    is_attrs: bool
    fields: tuple[FieldSchema, ...]
    members: tuple[MemberSchema, ...] = ()
    """An enum's members in definition order (aliases left out); empty otherwise."""


@frozen
class EntitySchema:
    """One entity type."""

    name: str
    cls: str
    id: str
    messages: tuple[str, ...]
    """Qualified message class names, sorted."""
    state: str
    state_version: int
    events: tuple[tuple[str, int], ...] = ()
    """An event-sourced entity's event classes (qualified, sorted) with their
    versions (1 + their upcasters); empty for a state-stored entity."""


@frozen
class Schema:
    """Every entity of a package and the package classes they are made of."""

    package: str
    entities: tuple[EntitySchema, ...]
    """Sorted by name."""
    classes: Mapping[str, ClassSchema]


# -- the description and its fingerprints --------------------------------------


def describe(schema: Schema) -> dict[str, Any]:
    """The canonical description the fingerprint hashes (plain JSON values)."""
    return {
        "package": schema.package,
        "entities": [
            {
                "name": e.name,
                "class": e.cls,
                "id": e.id,
                "messages": sorted(e.messages),
                "state": e.state,
                "state_version": e.state_version,
                # Only for event-sourced entities: other fingerprints stay as they were.
                **({"events": [list(ev) for ev in e.events]} if e.events else {}),
            }
            for e in schema.entities
        ],
        "classes": {name: _class(c) for name, c in sorted(schema.classes.items())},
    }


def _class(c: ClassSchema, lock_format: int = 2) -> dict[str, Any]:
    if lock_format == 1:
        # What format 1 locks hashed: no defaults, no enum members.
        return {"attrs": c.is_attrs, "fields": [[f.name, f.type, f.kw_only] for f in c.fields]}
    described: dict[str, Any] = {
        "attrs": c.is_attrs,
        "fields": [[f.name, f.type, f.kw_only, f.default] for f in c.fields],
    }
    if c.members:
        described["members"] = [[m.name, m.value] for m in c.members]
    return described


def _hash(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(schema: Schema) -> str:
    """sha256 (hex) of `describe(schema)`: `REGISTRY.fingerprint`."""
    return _hash(describe(schema))


_NAME = re.compile(r"[A-Za-z_][\w.]*")


def reachable(schema: Schema, types_: Iterable[str]) -> list[str]:
    """Qualified names of the package classes the canonical types `types_` reach."""
    found: list[str] = []
    pending = list(types_)
    while pending:
        for name in _NAME.findall(pending.pop()):
            if name in schema.classes and name not in found:
                found.append(name)
                pending.extend(f.type for f in schema.classes[name].fields)
    return sorted(found)


def state_fingerprint(schema: Schema, entity: EntitySchema, lock_format: int = 2) -> str:
    """The structure of the entity's state: its type and every class it reaches
    (`lock_format=1`: as format 1 locks hashed it, without defaults and enum members)."""
    classes = reachable(schema, [entity.state])
    return _hash(
        {
            "state": entity.state,
            "classes": {n: _class(schema.classes[n], lock_format) for n in classes},
        }
    )


def id_fingerprint(schema: Schema, entity: EntitySchema) -> str:
    """The structure of the entity's id type: entities are stored under its text."""
    classes = reachable(schema, [entity.id])
    return _hash({"id": entity.id, "classes": {n: _class(schema.classes[n]) for n in classes}})


def messages_fingerprint(schema: Schema, entity: EntitySchema, lock_format: int = 2) -> str:
    """The structure of the entity's message union: its classes and what they reach."""
    classes = reachable(schema, entity.messages)
    return _hash(
        {
            "messages": sorted(entity.messages),
            "classes": {n: _class(schema.classes[n], lock_format) for n in classes},
        }
    )


def shape_fingerprint(schema: Schema, name: str) -> str:
    """The structure of one class (qualified name) and every class it reaches."""
    classes = reachable(schema, [name])
    return _hash({"class": name, "classes": {n: _class(schema.classes[n]) for n in classes}})


def event_fingerprint(schema: Schema, event: str) -> str:
    """The structure of one event class (qualified name) and every class it reaches."""
    classes = reachable(schema, [event])
    return _hash({"event": event, "classes": {n: _class(schema.classes[n]) for n in classes}})


# -- the live view -------------------------------------------------------------


def live_schema(registry: Registry) -> Schema:
    """The schema of the classes `registry` names, as loaded in this process
    (the library's own entities, the same in every registry, left out)."""
    return _live_schema(registry.package, [t for t in registry if not _is_library(t.entity)])


def _is_library(cls: type) -> bool:
    return cls.__module__.startswith("pachytype.")


def _live_schema(package: str, etypes: Sequence[EntityType]) -> Schema:
    entities: list[EntitySchema] = []
    roots: list[Any] = []
    for etype in etypes:
        entity = etype.entity
        entities.append(
            EntitySchema(
                name=etype.name,
                cls=_qualified(entity),
                id=canonical(etype.id_type, package),
                messages=tuple(sorted(_qualified(m) for m in etype.messages)),
                state=canonical(etype.state, package),
                state_version=etype.state_version,
                events=tuple(
                    sorted(
                        (_qualified(e), entity.event_version(e))  # type: ignore[attr-defined]
                        for e in etype.events
                    )
                ),
            )
        )
        roots.extend([etype.state, etype.id_type, *etype.messages, *etype.events])
    entities.sort(key=lambda e: (e.name, e.cls))
    return Schema(package, tuple(entities), _live_classes(package, roots))


def _live_classes(package: str, roots: list[Any]) -> dict[str, ClassSchema]:
    found: dict[str, ClassSchema] = {}
    pending = list(roots)
    while pending:
        for cls in _classes_in(pending.pop()):
            name = _qualified(cls)
            # Ref classes of the generated module are not scanned by the generator.
            if name in found or not _in_package(cls, package) or issubclass(cls, Address):
                continue
            schema = _class_schema(cls, package)
            found[name] = schema
            if attrs.has(cls):
                pending.extend(field_types(cls).values())
    return dict(sorted(found.items()))


def _class_schema(cls: type, package: str) -> ClassSchema:
    if isinstance(cls, enum.EnumMeta):
        members = tuple(MemberSchema(m.name, literal(m.value)) for m in list[Any](cls))
        return ClassSchema(_qualified(cls), False, (), members)
    if not attrs.has(cls):
        return ClassSchema(_qualified(cls), False, ())
    hints = field_types(cls)
    made = [a for a in attrs.fields(cls) if a.init]
    ordered = [a for a in made if not a.kw_only] + [a for a in made if a.kw_only]
    fields = tuple(
        FieldSchema(
            a.name, canonical(hints[a.name], package), a.kw_only, a.default is not attrs.NOTHING
        )
        for a in ordered
    )
    return ClassSchema(_qualified(cls), True, fields)


def _classes_in(tp: Any) -> list[type]:
    tp = _supertype(tp)
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return [tp]
    found = [] if typing.get_origin(tp) is None else _classes_in(typing.get_origin(tp))
    for arg in typing.get_args(tp):
        if typing.get_origin(tp) is not typing.Literal:
            found.extend(_classes_in(arg))
    return found


def _in_package(cls: Any, package: str) -> bool:
    module = str(cls.__module__)
    return module == package or module.startswith(package + ".")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _supertype(tp: Any) -> Any:
    while isinstance(tp, NewType):
        tp = tp.__supertype__
    return tp


_UNRESOLVED = "<unresolved:"

# Spelled as the generator spells them: typing's aliases of builtins as builtins.
_TYPING_BUILTINS = {"List", "Dict", "Set", "FrozenSet", "Tuple", "Type"}


def canonical(tp: Any, package: str | None = None) -> str:
    """`tp` fully qualified, NewTypes expanded (`codegen.typeexpr.canonical`'s spelling).

    With `package`, only the package's own NewTypes are expanded: the generator
    cannot see inside another distribution, so it spells those by name too.
    """
    while isinstance(tp, NewType) and (package is None or _in_package(tp, package)):
        tp = tp.__supertype__
    if isinstance(tp, NewType):
        return f"{tp.__module__}.{tp.__name__}"
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(canonical(a, package) for a in args)
    if origin is typing.Literal:
        return f"typing.Literal[{', '.join(literal(a) for a in args)}]"
    if origin is not None:
        spelled = [
            _bracket(a, package) if isinstance(a, list) else canonical(a, package) for a in args
        ]
        head = _head(tp, origin)
        return f"{head}[{', '.join(spelled)}]" if args else head
    return _named(tp)


def _bracket(items: list[Any], package: str | None) -> str:
    return f"[{', '.join(canonical(i, package) for i in items)}]"


def _head(tp: Any, origin: Any) -> str:
    name = getattr(tp, "_name", None)
    if isinstance(tp, typing._GenericAlias) and name:  # type: ignore[attr-defined]
        return name.lower() if name in _TYPING_BUILTINS else f"typing.{name}"
    return _named(origin)


def _named(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, Unresolved):
        return f"{_UNRESOLVED}{tp.name}>"
    module = getattr(tp, "__module__", None)
    name = getattr(tp, "__qualname__", None) or getattr(tp, "_name", None) or repr(tp)
    if module in (None, "builtins"):
        return str(name)
    if module == "typing_extensions":
        module = "typing"
    if module == "pachytype" or str(module).startswith("pachytype."):
        return f"pachytype.{name}"
    return f"{module}.{name}"


def literal(value: object) -> str:
    """A literal value as the generator spells it (`codegen.literals.literal_code`)."""
    if isinstance(value, tuple):
        items = [literal(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, bytes):
        spelled = repr(value)
        if spelled.startswith("b'") and '"' not in value.decode("latin-1"):
            return 'b"' + spelled[2:-1].replace("\\'", "'") + '"'
        return spelled
    if isinstance(value, str):
        spelled = repr(value)
        if spelled.startswith("'") and '"' not in value:
            return '"' + spelled[1:-1].replace("\\'", "'") + '"'
        return spelled
    return repr(value)


# -- the run-time check --------------------------------------------------------


def is_checked(registry: Registry) -> bool:
    """Whether `registry` carries a generated fingerprint (hand-written ones do not)."""
    return bool(registry.fingerprint.strip("0"))


def check_registry(registry: Registry, etypes: Sequence[EntityType]) -> None:
    """Raise `StaleRegistryError` if the live classes of `etypes` (the registry's
    entity types, as it resolves them) no longer match the fingerprint the
    generator wrote into the registry's `refs.py`."""
    if not is_checked(registry):
        return
    schema = _live_schema(registry.package, etypes)
    if _UNRESOLVED in json.dumps(describe(schema)):
        # A name only mypy sees, from outside the package, inside `Address[...]`:
        # its module is unknown at run time, so the spelling cannot be compared.
        return
    live = fingerprint(schema)
    if live != registry.fingerprint:
        raise StaleRegistryError(registry.package, registry.fingerprint, live)
