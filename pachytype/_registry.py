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
from typing import Any

from attrs import Factory, field, frozen

from pachytype._entity import Entity
from pachytype._errors import UnknownEntityError, WrongMessageError
from pachytype._event_sourced import is_event_sourced
from pachytype._inbox import INBOX, Inbox, InboxState, answer_classes
from pachytype._schema import check_registry


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

    def __repr__(self) -> str:
        return f"<Registry {self.package} {sorted(self._resolve())} {self.fingerprint[:12]}>"
