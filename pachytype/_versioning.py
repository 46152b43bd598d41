"""Versioned state: bring raw stored state from its version to the code's.

Design note. Stored state carries the `state_version` it was written with.
Loading runs `@upgrade(from_version=v)` for v = stored .. current-1, each
over raw data (dicts, lists, strings, numbers), then the codec structures
the result into the current state class. Upgrading happens in memory only:
the upgraded state is written back with the current version the next time
the entity commits, never before, so a failed upgrade leaves the stored
bytes exactly as they were.

The rule every ecosystem applies when state cannot be loaded
(`StateVersionError` from here, or `DecodeError` from the codec for state
whose upgraded shape still does not fit): the entity is **held**. Its
messages stay in its mailbox, in order, unconsumed; nothing is dead-lettered,
nothing is written, `init` never replaces the stored state. `call` and
`state` on it raise the error; other entities run normally. Reopening the
ecosystem with fixed code (the missing upgrader, an upgrader that no longer
raises, the newer code that wrote the state) loads it and delivers the
waiting messages in their original order. Held rather than dead-lettered
because the fault is in the code, not the messages: dead-lettering them
would break per-sender order and make every one a manual redelivery.

A stored *message* that does not decode is different: it can never be
handled by any state, so it goes to the dead letters (its raw bytes kept)
and the entity carries on.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pachytype._entity import Entity, RawState
from pachytype._errors import StateVersionError


def upgrade_raw(
    entity: type[Entity[Any, Any, Any]],
    id: Hashable,
    raw: RawState,
    version: int,
) -> RawState:
    """`raw` state of `version` brought to `entity.state_version` by its upgraders.

    Raises `StateVersionError` (naming the entity, the id and both versions)
    when the stored version is newer than the code or below 1, when an
    upgrader is missing, or when one raises (chained as the cause).
    """
    name, current = entity.entity_type, entity.state_version
    if version == current:
        return raw
    if version > current:
        raise StateVersionError(
            name,
            id,
            version,
            current,
            "it was written by newer code",
            f"run the code that declares state_version = {version} (or newer) for "
            f"{entity.__name__}",
        )
    if version < 1:
        raise StateVersionError(
            name,
            id,
            version,
            current,
            "versions start at 1, so the stored data is damaged",
            "restore it from a backup",
        )
    missing = [v for v in range(version, current) if v not in entity.upgrades]
    if missing:
        raise StateVersionError(
            name,
            id,
            version,
            current,
            f"no upgrade chain reaches {current} (missing "
            f"{', '.join(f'@upgrade(from_version={v})' for v in missing)})",
            f"add {'them' if len(missing) > 1 else 'it'} to {entity.__name__}",
        )
    for v in range(version, current):
        step = entity.upgrades[v]
        try:
            raw = step(raw)
        except Exception as error:
            raise StateVersionError(
                name,
                id,
                version,
                current,
                f"@upgrade(from_version={v}) ({step.fn.__qualname__}) raised "
                f"{type(error).__name__}: {error}",
                "fix that upgrader",
            ) from error
    return raw


def upcast_raw(
    entity: type[Entity[Any, Any, Any]], id: Hashable, event: str, raw: Any, version: int
) -> Any:
    """The raw fields of a stored `event` of `version` brought to the event
    class's current version by the entity's `@upcast` chain.

    Raises `StateVersionError` (naming the entity, the id, the event and both
    versions) when the stored version is newer than the code's or when an
    upcaster raises (chained as the cause)."""
    upcasts = getattr(entity, "upcasts", {})
    current = 1 + sum(1 for e, _ in upcasts if e == event)
    if version == current:
        return raw
    if version > current or version < 1:
        raise StateVersionError(
            entity.entity_type,
            id,
            version,
            current,
            f"a stored {event} event has version {version}, the code knows "
            f"{current}" + (" (it was written by newer code)" if version > current else ""),
            f"run the code that declares @upcast(event={event}, from_version={version - 1})",
        )
    for v in range(version, current):
        step = upcasts[(event, v)]
        try:
            raw = step(raw)
        except Exception as error:
            raise StateVersionError(
                entity.entity_type,
                id,
                version,
                current,
                f"@upcast(event={event}, from_version={v}) ({step.fn.__qualname__}) raised "
                f"{type(error).__name__}: {error}",
                "fix that upcaster",
            ) from error
    return raw
