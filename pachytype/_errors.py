"""Public exceptions. Each names the entity, the id, what was expected and what to do."""

from __future__ import annotations

from collections.abc import Hashable


class PachytypeError(Exception):
    """Base class of every error pachytype raises on purpose."""


class UnknownEntityError(PachytypeError, LookupError):
    """An address names an entity type the ecosystem's registry does not have."""

    def __init__(self, entity_type: str, id: Hashable, known: list[str], package: str) -> None:
        self.entity_type = entity_type
        self.id = id
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


class EcosystemClosedError(PachytypeError, RuntimeError):
    """The ecosystem is not open (use `async with Eco(...) as eco:`)."""
