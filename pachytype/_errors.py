"""Public exceptions. Each names the entity, the id, what was expected and what to do."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path


class PachytypeError(Exception):
    """Base class of every error pachytype raises on purpose."""


class UnknownEntityError(PachytypeError, LookupError):
    """An address names an entity type the ecosystem's registry does not have."""

    def __init__(self, entity_type: str, id: Hashable, known: list[str], package: str) -> None:
        self.entity_type = entity_type
        self.id = id
        # The library's own entities (`pachytype.inbox`) are in every registry: not news.
        known = [name for name in known if not name.startswith("pachytype.")]
        super().__init__(
            f"unknown entity type {entity_type!r} (id {id!r}): registry of {package!r} "
            f"has {', '.join(sorted(known)) or 'no entities'}; open the ecosystem with the "
            f"REGISTRY of the package that declares {entity_type!r}, or run "
            f"`pachytype generate` if you added it recently"
        )


class WrongMessageError(PachytypeError, TypeError):
    """A message that is not one of the target entity's message classes."""

    def __init__(
        self, entity_type: str, id: Hashable, message: object, expected: list[str]
    ) -> None:
        self.entity_type = entity_type
        self.id = id
        self.message = message
        super().__init__(
            f"entity {entity_type!r} (id {id!r}) cannot receive a "
            f"{type(message).__qualname__} ({message!r}): it accepts "
            f"{' | '.join(expected)}; send one of those, built with the entity's ref"
        )


class ActivationError(PachytypeError):
    """`activate` (or `init`) raised; raised by `call`, the cause is chained.

    The entity keeps its last committed state; the message went to the dead
    letters with the entity's recent messages.
    """

    def __init__(self, entity_type: str, id: Hashable, message: object, error: BaseException):
        self.entity_type = entity_type
        self.id = id
        self.message = message
        self.error = error
        super().__init__(
            f"entity {entity_type!r} (id {id!r}) raised {type(error).__name__}: {error} "
            f"while handling {message!r}; its state is unchanged and the message is in "
            f"the dead letters (eco.dead_letters())"
        )


class InitError(PachytypeError):
    """`init(id)` raised while reading the state of an entity never activated."""

    def __init__(self, entity_type: str, id: Hashable, error: BaseException):
        self.entity_type = entity_type
        self.id = id
        self.error = error
        super().__init__(
            f"entity {entity_type!r} (id {id!r}) has no state yet and its init(id) raised "
            f"{type(error).__name__}: {error}; fix init, or do not address this id"
        )


class ActivationTimeoutError(PachytypeError):
    """An `activate` (or `init`) ran past its time budget and was interrupted."""

    def __init__(self, entity_type: str, id: Hashable, budget: float):
        self.entity_type = entity_type
        self.id = id
        self.budget = budget
        super().__init__(
            f"entity {entity_type!r} (id {id!r}) ran past its activation budget of "
            f"{budget:g} s and was interrupted; its state is unchanged and the message is a "
            f"dead letter. activate must be quick and pure: look for a loop that never "
            f"ends, or raise the budget (`activation_budget` on the entity class or the "
            f"ecosystem)"
        )


class PoisonMessageError(PachytypeError):
    """Stored mail that was being handled each time its process died (or its
    commit failed), too often."""

    def __init__(self, entity_type: str, id: Hashable, attempts: int):
        self.entity_type = entity_type
        self.id = id
        self.attempts = attempts
        super().__init__(
            f"a message to entity {entity_type!r} (id {id!r}) was being handled {attempts} "
            f"times when its process died or its commit failed (a crash, a kill, an "
            f"activation that could not be interrupted, a value the database refused); it "
            f"was not run again and is a dead letter, and the entity went on. Fix what it "
            f"does to activate, then redeliver it"
        )


class EcosystemClosedError(PachytypeError, RuntimeError):
    """The ecosystem is not open (use `async with Eco(...) as eco:`)."""


class DatabaseFileError(PachytypeError):
    """A LocalDisk database path that does not name a usable database file (a
    directory, a device, `:memory:`, a file that is not SQLite, a database lost
    next to its write-ahead log, a truncated log), or database files deleted or
    replaced while open. Nothing was written to them."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        super().__init__(f"cannot use {str(path)!r} as a LocalDisk database: {problem}")


class DecodeError(PachytypeError, ValueError):
    """Stored or received bytes that do not decode into the registry's types.

    `path` locates the bad part (`$.to.id`, `$[2]`), `value` is what was found
    there. Nothing is built from such data and nothing stored is changed.
    """

    def __init__(
        self,
        entity_type: str,
        id: Hashable,
        what: str,
        path: str,
        problem: str,
        value: object,
        fix: str,
    ) -> None:
        self.entity_type = entity_type
        self.id = id
        self.path = path
        self.value = value
        super().__init__(
            f"cannot decode the {what} of entity {entity_type!r} (id {_id(id)}): at {path}: "
            f"{problem}, got {_shown(value)}; {fix}"
        )


class EncodeError(PachytypeError, TypeError):
    """A value the codec cannot encode (an id of the wrong type, an address of
    an entity type outside the registry, a type cattrs cannot unstructure)."""

    def __init__(self, entity_type: str, id: Hashable, what: str, problem: str) -> None:
        self.entity_type = entity_type
        self.id = id
        super().__init__(
            f"cannot encode the {what} of entity {entity_type!r} (id {_id(id)}): {problem}"
        )


class ValueTooLargeError(EncodeError, ValueError):
    """An id, message or state whose encoding is over its documented limit
    (`pachytype._codec.MAX_ID_BYTES`, `MAX_MESSAGE_BYTES`, `MAX_STATE_BYTES`)."""

    def __init__(
        self, entity_type: str, id: Hashable, what: str, size: int, limit: int, fix: str
    ) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            entity_type,
            id,
            what,
            f"it encodes to {size:,} bytes, over the limit of {limit:,} bytes; {fix}",
        )


class StateVersionError(PachytypeError):
    """Stored state whose version the code cannot bring to its `state_version`.

    Raised when the stored version is newer than the code (an older deploy is
    running), when the `@upgrade` chain has a gap, or when an upgrader
    raises (chained). The stored state is never overwritten and the entity
    is held: its messages wait until code that can read it is running.
    """

    def __init__(
        self,
        entity_type: str,
        id: Hashable,
        stored: int,
        current: int,
        problem: str,
        fix: str,
    ) -> None:
        self.entity_type = entity_type
        self.id = id
        self.stored = stored
        self.current = current
        super().__init__(
            f"entity {entity_type!r} (id {_id(id)}): stored state has version {stored}, "
            f"the code's state_version is {current}: {problem}; the stored state is kept "
            f"unchanged and the entity's messages wait; {fix}"
        )


def _id(id: Hashable) -> str:
    return "unknown" if id is None else _shown(id)


def _shown(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class StaleRegistryError(PachytypeError):
    """The entity classes changed since `refs.py` was generated (its fingerprint differs)."""

    def __init__(self, package: str, generated: str, live: str) -> None:
        self.package = package
        self.generated = generated
        self.live = live
        super().__init__(
            f"refs.py is stale: run pachytype generate {package.replace('.', '/')} "
            f"(the entities of {package!r} changed since it was generated: its fingerprint "
            f"is {generated[:12]}, the classes loaded now give {live[:12]}); the ecosystem "
            f"was not opened"
        )


class DeadlineError(PachytypeError, TimeoutError):
    """A `call`, `ask` or `state` got no answer within its `timeout`.

    A timed-out call or ask may still take effect: its message was sent (on a
    durable ecosystem it is stored) and is handled when the entity's owner gets
    to it; only the wait was given up. Resend only what is safe to receive
    twice, or ask the entity whether it happened.
    """

    def __init__(self, text: str, entity_type: str, id: Hashable, timeout: float) -> None:
        self.entity_type = entity_type
        self.id = id
        self.timeout = timeout
        super().__init__(text)


class StoreLockedError(PachytypeError):
    """Another process (or another open ecosystem) owns this database."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        super().__init__(
            f"database {str(path)!r} is already open by another LocalDisk ({holder}); "
            f"LocalDisk runs on one node: close the other process (or the other "
            f"ecosystem on this file) first, or use Postgres for many nodes"
        )


class ProjectionError(PachytypeError):
    """A projection stopped: its `apply` raised on an event (chained as the cause)."""


class FingerprintMismatchError(PachytypeError):
    """A node or client tried to join a cluster whose live members run a
    registry it cannot run beside (see `_compat.conflicts`)."""


class VersionSkewError(PachytypeError):
    """A message (or a call's answer) that a live node of another version of
    the registry could not decode: deploy that version everywhere first."""
