"""An event-sourced entity's state, rebuilt from its journal. Pure.

Design note
-----------
The journal of an entity is its latest snapshot (a state and the sequence
number of the last event folded into it) and its events after that
snapshot, in sequence order. Every ecosystem rebuilds state with
`rebuild`: the snapshot (or `init(id)` when there is none) folded with
`evolve` over the events. No snapshot and no event means the entity was
never born (UNBORN), exactly as a state-stored entity with no stored state.

A raise while replaying (an `evolve` that now raises on an old event, an
`init` that raises) is a `ReplayError` naming the entity, the id, the event
and its sequence number: the ecosystem *holds* the entity (see
`pachytype._core.held`), as for a state that does not decode, because the
fault is in the code and the stored events must not be lost or skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from pachytype._core.turn import UNBORN
from pachytype._errors import PachytypeError
from pachytype._registry import EntityType


class ReplayError(PachytypeError):
    """Replaying an event-sourced entity's events raised: the entity is held."""


def rebuild(
    etype: EntityType, id: Hashable, snapshot: object, events: Iterable[tuple[int, object]]
) -> object:
    """The state after `snapshot` (a state, or UNBORN) and `events`
    (`(sequence number, event)` in order); UNBORN if both are empty."""
    state = snapshot
    evolve: Any = etype.instance.evolve  # type: ignore[attr-defined]
    seq = 0
    event: object = None
    try:
        for number, event in events:
            seq = number  # named in the error below
            if state is UNBORN:
                state = etype.instance.init(id)
            state = evolve(state, event)
    except Exception as error:
        raise ReplayError(
            f"entity {etype.name!r} (id {id!r}): replaying event #{seq} "
            f"({type(event).__qualname__}) raised {type(error).__name__}: {error}; "
            f"evolve must accept every stored event: fix it (or add an @upcast for the "
            f"event's old form) and the entity is loaded again"
        ) from error
    return state
