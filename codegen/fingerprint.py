"""The schema fingerprint: sha256 of a canonical JSON description of the model.

Covers what must match between nodes and stored data: each entity's name,
class, id type, message classes and state type (canonical spellings), its
state_version, and the fields of every package class they are made of.
Renaming an alias or a NewType, reordering a union of messages or changing a
default does not change it; renaming a class or a field, changing a type or
bumping state_version does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .model import ClassModel, PackageModel


def describe(model: PackageModel) -> dict[str, Any]:
    """The canonical description the fingerprint hashes (plain JSON values)."""
    return {
        "package": model.package,
        "entities": [
            {
                "name": e.name,
                "class": e.sym.qualname,
                "id": e.canonical_id,
                "messages": sorted(m.cls.qualname for m in e.messages),
                "state": e.canonical_state,
                "state_version": e.state_version,
            }
            for e in model.entities
        ],
        "classes": {name: _class(c) for name, c in sorted(model.classes.items())},
    }


def _class(model: ClassModel) -> dict[str, Any]:
    return {
        "attrs": model.is_attrs,
        "fields": [[f.name, f.canonical_type, f.kw_only] for f in model.fields],
    }


def fingerprint(model: PackageModel) -> str:
    """sha256 (hex) of the canonical description of `model`."""
    text = json.dumps(describe(model), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
