"""The registry: every entity type of a package, its message classes, state
type and version, and the schema fingerprint. Generated `refs.py` modules
build one (`REGISTRY`); ecosystems are opened with it.

Every registry also holds the library's own entities (the inbox of
`eco.ask`, `pachytype._inbox`). The entity list is resolved lazily (a
function the generated module passes) so that entity modules and `refs.py`
may import each other freely.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

from attrs import Factory, field, frozen

from pachytype._entity import Entity
from pachytype._errors import UnknownEntityError, WrongMessageError
from pachytype._event_sourced import is_event_sourced
from pachytype._inbox import INBOX, Inbox, InboxState, answer_classes
from pachytype._schema import check_registry

Id = TypeVar("Id", bound=Hashable)
M = TypeVar("M")
S = TypeVar("S")


@frozen
class EntityType:
    """One entity type as the runtime sees it."""

    entity: type[Entity[Any, Any, Any]]
    messages: tuple[type, ...]
    state: Any
    id_type: Any = object
    # `default=Factory(...)` rather than `@x.default` methods: pyright reads defaults
    # only from the field specifier, and would call these arguments missing.
    name: str = field(default=Factory(lambda self: self.entity.entity_type, takes_self=True))
    instance: Entity[Any, Any, Any] = field(
        default=Factory(lambda self: self.entity(), takes_self=True), eq=False, repr=False
    )
    message_set: frozenset[type] = field(
        default=Factory(lambda self: frozenset(self.messages), takes_self=True),
        eq=False,
        repr=False,
    )

    events: tuple[type, ...] = ()
    """The event classes of an event-sourced entity (empty for a state-stored one)."""
    event_sourced: bool = field(
        default=Factory(lambda self: is_event_sourced(self.entity), takes_self=True),
        eq=False,
        repr=False,
    )
    """Whether the entity keeps events (an `EventSourced` class)."""
    event_set: frozenset[type] = field(
        default=Factory(lambda self: frozenset(self.events), takes_self=True),
        eq=False,
        repr=False,
    )

    @property
    def state_version(self) -> int:
        """The entity class's current `state_version`."""
        return self.entity.state_version

    def check_message(self, id: Hashable, message: object) -> None:
        """Raise `WrongMessageError` unless `message` is one of this entity's classes."""
        if type(message) not in self.message_set:
            raise WrongMessageError(self.name, id, message, [m.__qualname__ for m in self.messages])


class Registry:
    """Every entity type of a package; ecosystems are opened with one.

    >>> from examples.bank.refs import REGISTRY          # doctest: +SKIP
    >>> async with InMemory(REGISTRY) as eco: ...        # doctest: +SKIP
    """

    def __init__(
        self,
        package: str,
        entities: Callable[[], Sequence[EntityType]],
        fingerprint: str,
    ) -> None:
        self.package = package
        self.fingerprint = fingerprint
        self._load = entities
        self._types: dict[str, EntityType] | None = None
        self.replaced: dict[str, type[Entity[Any, Any, Any]]] = {}
        """Entity type name -> the stand-in running in its place (`replacing`)."""
        self.derived: dict[str, Any] = {}
        """What other modules compute once from this registry's types, by name
        (the codec's converter and tables): it lives as long as the registry."""

    def _resolve(self) -> dict[str, EntityType]:
        types = self._types
        if types is None:
            types = {}
            for t in self._load():
                if t.name in types:
                    raise ValueError(f"registry {self.package!r}: entity type {t.name!r} twice")
                types[t.name] = t
            check_registry(self, list(types.values()))  # refuses a stale refs.py
            # The library's own entities, which every registry has (not in the
            # fingerprint: they are the same for every package).
            messages = answer_classes(m for t in types.values() for m in t.messages)
            types[INBOX] = EntityType(Inbox, messages, InboxState, str, INBOX)
            self._types = types
        return types

    @property
    def types(self) -> dict[str, EntityType]:
        """Entity types by name."""
        return self._resolve()

    def __iter__(self) -> Iterator[EntityType]:
        return iter(self._resolve().values())

    def get(self, entity_type: str, id: Hashable = None) -> EntityType:
        """The entity type named `entity_type`, or `UnknownEntityError`."""
        try:
            return self._resolve()[entity_type]
        except KeyError:
            raise UnknownEntityError(entity_type, id, list(self._resolve()), self.package) from None

    def replacing(
        self, entity: type[Entity[Id, M, S]], stand_in: type[Entity[Id, M, S]]
    ) -> Registry:
        """This registry with `stand_in` running in place of `entity` (a test
        seam: a fake payment provider, a deterministic clock entity...).

        The stand-in is addressed exactly as `entity` (same entity type
        name, same refs) and must have the same id, message and state types:
        mypy rejects anything else (the three types are inferred from both
        arguments, and entity types are invariant in them). It keeps the
        same `state_version`, so stored states read the same. The fingerprint
        stays the original's: nodes and stores see the same schema. Chain
        calls to replace several entities::

            fake = REGISTRY.replacing(Payment, FakePayment)
            async with InMemory(fake) as eco: ...
            sim = Simulation(fake)
        """
        types = self._resolve()
        original = types.get(entity.entity_type)
        if original is None or original.entity is not entity:
            raise ValueError(
                f"registry {self.package!r} has no entity {entity.__qualname__!r} to replace "
                f"(its entity types: {sorted(types)}); pass an entity class of this registry"
            )
        checked: object = stand_in  # typed code cannot pass anything else; untyped code can
        if not (isinstance(checked, type) and issubclass(checked, Entity)):
            raise TypeError(
                f"the stand-in for entity {original.name!r} must be an Entity subclass, "
                f"got {stand_in!r}"
            )
        if stand_in.state_version != entity.state_version:
            raise ValueError(
                f"the stand-in {stand_in.__qualname__} for entity {original.name!r} has "
                f"state_version {stand_in.state_version}, the entity has "
                f"{entity.state_version}: give the stand-in the same state_version (subclass "
                f"the entity, or set it)"
            )
        replaced = dict(types)
        replaced[original.name] = EntityType(
            stand_in,
            original.messages,
            original.state,
            original.id_type,
            original.name,
            events=original.events,
        )
        if replaced[original.name].event_sourced != original.event_sourced:
            raise TypeError(
                f"the stand-in {stand_in.__qualname__} for entity {original.name!r} must "
                f"{'be' if original.event_sourced else 'not be'} event-sourced, as the entity is"
            )
        registry = Registry(self.package, lambda: list(replaced.values()), self.fingerprint)
        # Resolved already: the live schema names the stand-in's class, which
        # the generated fingerprint (kept on purpose) does not.
        registry._types = replaced
        registry.replaced = {**self.replaced, original.name: stand_in}
        return registry

    def __repr__(self) -> str:
        stand_ins = "".join(
            f" {name}->{cls.__qualname__}" for name, cls in sorted(self.replaced.items())
        )
        return (
            f"<Registry {self.package} {sorted(self._resolve())} {self.fingerprint[:12]}"
            f"{stand_ins}>"
        )
