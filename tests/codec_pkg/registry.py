"""A hand-written registry of the codec test package (the shape `refs.py` has)."""

from __future__ import annotations

import uuid
from typing import Final

import tests.codec_pkg.boxes as _m_boxes
import tests.codec_pkg.desk as _m_desk
from pachytype import EntityType, Registry


def _entity_types() -> list[EntityType]:
    return [
        EntityType(
            entity=_m_boxes.Box,
            messages=(_m_boxes.Empty, _m_boxes.Put),
            state=_m_boxes.Full | _m_boxes.Vacant,
            id_type=int,
        ),
        EntityType(entity=_m_boxes.Crate, messages=(_m_boxes.Seal,), state=bool, id_type=uuid.UUID),
        EntityType(
            entity=_m_desk.Desk,
            messages=(_m_desk.Note,),
            state=tuple[str, ...],
            id_type=_m_desk.NoteId,
        ),
        EntityType(
            entity=_m_desk.Ledger,
            messages=(_m_desk.Entry,),
            state=dict[int, str],
            id_type=str,
        ),
        EntityType(
            entity=_m_boxes.Shelf,
            messages=(_m_boxes.Label,),
            state=str,
            id_type=_m_boxes.ShelfId,
        ),
    ]


REGISTRY: Final = Registry("tests.codec_pkg", _entity_types, fingerprint="")
