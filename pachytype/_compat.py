"""Rolling deploys: what a registry can read and send, and which registries can
run side by side.

Design note. During a rolling deploy, processes running two versions of a
package (or more) share one PostgreSQL schema. Each publishes a
`Description` of its registry: per entity type, the state version it writes,
the oldest stored version its `@upgrade` chain reads, the shape of its state
and of each message class (fingerprints, and the classes they are made of,
so that a difference can be classified). Three decisions are made from two
descriptions, all pure and all here:

- `reads_state(reader, writer, entity)`: can the reader load every state the
  writer stores for that entity type? Yes for an older version its upgrade
  chain starts from, or for the same version with a state shape that only
  changed compatibly (`codegen.evolution`: a new field with a default, ...);
  never for a newer version.
- `decodes(reader, writer, entity, message)`: can the reader decode a
  message of that class as the writer encodes it? Yes if it has the class
  and the shape is the same or changed compatibly *from the writer's to the
  reader's* (a field added with a default decodes in the new code; the old
  code refuses the unknown key, so the other way it is no).
- `conflicts(a, b)`: what makes two registries truly incompatible, so one
  must not join while the other runs: an entity type whose states neither
  side can read from the other (no upgrade chain either way), a message
  class neither side decodes from the other, or no entity type in common
  at all (two different applications in one schema).

Names are package-relative (`__package__.account.AccountState`): what is stored never
holds the package name (attrs classes are tagged by their class name), so
two checkouts of one application compare equal even when the test suite
imports them under two package names.

The coordination built on this (`_postgres/deploy.py`): partitions remember which
registries have owned them (their *writers*); a node may own a partition
only if it reads the states of every writer (`eligible`), and a sender may
send a message only if every live node eligible for the target's partition
decodes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from attrs import frozen

from pachytype._generator import codegen_module
from pachytype._schema import (
    ClassSchema,
    EntitySchema,
    FieldSchema,
    MemberSchema,
    Schema,
    live_schema,
    reachable,
    shape_fingerprint,
    state_fingerprint,
)

if TYPE_CHECKING:
    from pachytype._registry import Registry

FORMAT = 1
"""The version of a description's JSON layout."""

RELATIVE = "__package__"
"""What a package's own name becomes in a description (`__package__.account.State`)."""


@frozen
class EntityShape:
    """One entity type as a registry stores and decodes it."""

    version: int
    """The state version it writes."""
    reads_from: int
    """The oldest stored state version its `@upgrade` chain brings to `version`."""
    state: str
    """The state type, canonical and package-relative."""
    state_fp: str
    """Fingerprint of the state's shape (`_schema.state_fingerprint`)."""
    messages: Mapping[str, str]
    """Message class (package-relative) -> fingerprint of its shape."""


@frozen
class Description:
    """What one registry writes and reads, as published in the membership rows."""

    package: str
    fingerprint: str
    entities: Mapping[str, EntityShape]
    classes: Mapping[str, ClassSchema]

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the description's JSON: the key it is published under."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @functools.cached_property
    def writes(self) -> tuple[tuple[str, int, str], ...]:
        """What it stores: per entity type, the state version and shape. Two
        registries that store the same are the same writer for `eligible`."""
        return tuple((name, e.version, e.state_fp) for name, e in sorted(self.entities.items()))

    def to_json(self) -> str:
        """Compact JSON, keys sorted (the same text for the same description)."""
        value = {
            "format": FORMAT,
            "package": self.package,
            "fingerprint": self.fingerprint,
            "entities": {
                name: {
                    "version": e.version,
                    "reads_from": e.reads_from,
                    "state": e.state,
                    "state_fp": e.state_fp,
                    "messages": dict(e.messages),
                }
                for name, e in self.entities.items()
            },
            "classes": {name: _class_json(c) for name, c in self.classes.items()},
        }
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Description:
        """The inverse of `to_json`."""
        value = json.loads(text)
        if value.get("format") != FORMAT:
            raise ValueError(
                f"a registry description of format {value.get('format')!r} (this pachytype "
                f"reads format {FORMAT}): upgrade pachytype on this machine"
            )
        return cls(
            package=value["package"],
            fingerprint=value["fingerprint"],
            entities={
                name: EntityShape(
                    e["version"], e["reads_from"], e["state"], e["state_fp"], e["messages"]
                )
                for name, e in value["entities"].items()
            },
            classes={name: _class_from(name, c) for name, c in value["classes"].items()},
        )

    def short(self) -> str:
        """How errors name this registry: package and fingerprint (or digest)."""
        named = self.fingerprint if self.fingerprint.strip("0") else self.digest
        return f"{self.package!r} ({named[:12]})"


def _class_json(c: ClassSchema) -> dict[str, Any]:
    return {
        "attrs": c.is_attrs,
        "fields": [[f.name, f.type, f.kw_only, f.default] for f in c.fields],
        "members": [[m.name, m.value] for m in c.members],
    }


def _class_from(name: str, c: dict[str, Any]) -> ClassSchema:
    return ClassSchema(
        name,
        c["attrs"],
        tuple(FieldSchema(*f) for f in c["fields"]),
        tuple(MemberSchema(*m) for m in c["members"]),
    )


# -- describing a registry -----------------------------------------------------


def describe_registry(registry: Registry) -> Description:
    """The description of `registry`, from its live classes."""
    schema = relative(live_schema(registry), registry.package)
    reads_from = {
        e.name: _reads_from(e.state_version, registry.types[e.name].entity.upgrades)
        for e in schema.entities
    }
    return describe_schema(schema, registry.fingerprint, reads_from)


def describe_schema(schema: Schema, fingerprint: str, reads_from: Mapping[str, int]) -> Description:
    """The description of a (package-relative) `schema`; `reads_from`: per
    entity type, the oldest state version its upgrade chain reads (default:
    its own version)."""
    entities: dict[str, EntityShape] = {}
    for entity in schema.entities:
        entities[entity.name] = EntityShape(
            version=entity.state_version,
            reads_from=reads_from.get(entity.name, entity.state_version),
            state=entity.state,
            state_fp=state_fingerprint(schema, entity),
            messages={m: shape_fingerprint(schema, m) for m in entity.messages},
        )
    needed = reachable(schema, [t for e in schema.entities for t in (e.state, *e.messages)])
    return Description(
        schema.package,
        fingerprint,
        dict(sorted(entities.items())),
        {n: schema.classes[n] for n in needed},
    )


def _reads_from(version: int, upgrades: Mapping[int, object]) -> int:
    oldest = version
    while oldest - 1 in upgrades:
        oldest -= 1
    return oldest


def relative(schema: Schema, package: str) -> Schema:
    """`schema` with the package's own name replaced by `RELATIVE` everywhere."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(package)}(?=\.)")

    def rel(text: str) -> str:
        return pattern.sub(RELATIVE, text)

    def klass(c: ClassSchema) -> ClassSchema:
        fields = tuple(FieldSchema(f.name, rel(f.type), f.kw_only, f.default) for f in c.fields)
        return ClassSchema(rel(c.name), c.is_attrs, fields, c.members)

    entities = tuple(
        EntitySchema(
            name=e.name,
            cls=rel(e.cls),
            id=rel(e.id),
            messages=tuple(sorted(rel(m) for m in e.messages)),
            state=rel(e.state),
            state_version=e.state_version,
            events=tuple((rel(n), v) for n, v in e.events),
        )
        for e in schema.entities
    )
    classes = {rel(name): klass(c) for name, c in schema.classes.items()}
    return Schema(schema.package, entities, classes)


# -- the decisions -------------------------------------------------------------


def short_name(name: str) -> str:
    """A class's name without its modules (`__package__.account.Deposit` -> `Deposit`)."""
    return name.rsplit(".", 1)[-1]


def reads_state(reader: Description, writer: Description, entity: str) -> str | None:
    """None if `reader` loads every state `writer` stores for `entity`, else why not.

    A type either side lacks has nothing to decide (None)."""
    r, w = reader.entities.get(entity), writer.entities.get(entity)
    if r is None or w is None:
        return None
    if w.version > r.version:
        return (
            f"{writer.short()} writes state version {w.version} of {entity!r}, "
            f"{reader.short()} reads up to version {r.version}"
        )
    if w.version < r.version:
        if w.version < r.reads_from:
            return (
                f"{writer.short()} writes state version {w.version} of {entity!r}, "
                f"{reader.short()} has no @upgrade chain from it (it reads versions "
                f"{r.reads_from} to {r.version})"
            )
        return None
    if w.state_fp == r.state_fp:
        return None
    evolution = codegen_module("evolution")
    changes = evolution.state_changes(w.state, r.state, writer.classes, reader.classes)
    bad = [c.text for c in changes if not c.compatible]
    if not changes:
        bad = ["its shape changed in a way pachytype cannot classify"]
    if bad:
        return (
            f"{writer.short()} and {reader.short()} both write state version {w.version} of "
            f"{entity!r} in different shapes, and states stored by the first do not decode "
            f"in the second: {'; '.join(bad)}"
        )
    return None


def decodes(reader: Description, writer: Description, entity: str, message: str) -> str | None:
    """None if `reader` decodes a `message` (package-relative class name) that
    `writer` encodes for `entity`, else why not. An entity type the writer
    does not describe (the library's own, like the inbox of `ask`, the same
    in every registry) has nothing to decide (None)."""
    r, w = reader.entities.get(entity), writer.entities.get(entity)
    if w is None:
        return None
    if r is None:
        return f"{reader.short()} has no entity type {entity!r}"
    theirs = r.messages.get(message)
    if theirs is None:
        return f"{reader.short()} has no message class {short_name(message)} for {entity!r}"
    if w.messages.get(message) in (None, theirs):
        return None
    evolution = codegen_module("evolution")
    changes = evolution.message_changes((message,), (message,), writer.classes, reader.classes)
    bad = [c.text for c in changes if not c.compatible]
    if not changes:
        bad = ["its shape changed in a way pachytype cannot classify"]
    if bad:
        return (
            f"{reader.short()} decodes {short_name(message)} of {entity!r} in another shape "
            f"than {writer.short()} encodes it: {'; '.join(bad)}"
        )
    return None


def eligible(node: Description, writers: Iterable[Description]) -> bool:
    """Whether `node` reads every state each of `writers` may have stored."""
    return all(reads_state(node, w, entity) is None for w in writers for entity in w.entities)


def conflicts(a: Description, b: Description) -> list[str]:
    """Why `a` and `b` cannot run side by side (empty: they can)."""
    if a.digest == b.digest:
        return []
    common = sorted(set(a.entities) & set(b.entities))
    if not common and a.entities and b.entities:
        return [
            f"{a.short()} and {b.short()} have no entity type in common "
            f"({sorted(a.entities)} and {sorted(b.entities)}): two applications in one schema"
        ]
    found: list[str] = []
    for entity in common:
        one, other = reads_state(a, b, entity), reads_state(b, a, entity)
        if one is not None and other is not None:
            found.append(f"neither reads the other's states of {entity!r} ({one}; {other})")
        for message in sorted(set(a.entities[entity].messages) & set(b.entities[entity].messages)):
            one, other = decodes(a, b, entity, message), decodes(b, a, entity, message)
            if one is not None and other is not None:
                found.append(
                    f"neither decodes the other's {short_name(message)} of {entity!r} ({one})"
                )
    return found
