"""The schema fingerprint of the model: `pachytype._schema`'s, computed statically.

The description and the hash live in `pachytype._schema`, so the run-time
check (which rebuilds the same `Schema` from the live classes) and this
module cannot drift apart; here we only turn the model into a `Schema`.
Covers each entity's name, class, id type, message classes and state type
(canonical spellings), its state_version, and the fields of every package
class they are made of (with whether each field has a default, and enum
members' values). Renaming an alias or a NewType, reordering a union of
messages or changing a default's value does not change it; renaming a class
or a field, changing a type, an enum value or a default's presence, or
bumping state_version does.
"""

from __future__ import annotations

from typing import Any

from pachytype import _schema  # noqa: PLC2701 (the generator and the runtime share it)
from pachytype._worker import CONTROL_MESSAGES  # noqa: PLC2701 (a worker's messages)

from .model import ClassModel, PackageModel


def schema(model: PackageModel) -> _schema.Schema:
    """The model as the canonical `Schema` the runtime also computes."""
    return _schema.Schema(
        package=model.package,
        entities=tuple(
            _schema.EntitySchema(
                name=e.name,
                cls=e.sym.qualname,
                id=e.canonical_id,
                messages=tuple(
                    sorted([m.cls.qualname for m in e.messages] + (_CONTROL if e.is_worker else []))
                ),
                state=e.canonical_state,
                state_version=e.state_version,
                events=tuple(sorted((c.qualname, e.event_version(c.sym.name)) for c in e.events)),
            )
            for e in model.entities
        ),
        classes={name: _class(c) for name, c in sorted(model.classes.items())},
    )


_CONTROL = [f"{c.__module__}.{c.__qualname__}" for c in CONTROL_MESSAGES]
"""A worker's messages besides its requests, spelled as the run time spells them."""


def _class(model: ClassModel) -> _schema.ClassSchema:
    return _schema.ClassSchema(
        model.qualname,
        model.is_attrs,
        tuple(
            _schema.FieldSchema(f.name, f.canonical_type, f.kw_only, f.has_default)
            for f in model.fields
        ),
        tuple(_schema.MemberSchema(name, value) for name, value in model.members),
    )


def describe(model: PackageModel) -> dict[str, Any]:
    """The canonical description the fingerprint hashes (plain JSON values)."""
    return _schema.describe(schema(model))


def fingerprint(model: PackageModel) -> str:
    """sha256 (hex) of the canonical description of `model`."""
    return _schema.fingerprint(schema(model))
