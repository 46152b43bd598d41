"""The model: what the generator knows about a package's entities.

Plain attrs values, built by `build.py` from the scanned source and read by
the renderer, the fingerprint and the schema lock. Types are kept as
`TypeExpr`s; `canonical` gives the fully-qualified spelling the lock and the
fingerprint compare.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from .typeexpr import Sym, TypeExpr, canonical


@frozen
class FieldModel:
    """One attrs field that `__init__` takes: `param` is its parameter name
    (attrs strips leading underscores; `alias=` overrides)."""

    name: str
    param: str
    type: TypeExpr
    has_default: bool
    default: str | None
    """The default as ruff-formatted literal code, or None when attrs computes it
    (a factory, a name, a mutable value): the ref then leaves it to attrs."""
    kw_only: bool

    @property
    def canonical_type(self) -> str:
        """The field's type, fully qualified, aliases and NewTypes expanded."""
        return canonical(self.type)


@frozen
class ClassModel:
    """A class of the package that messages or state are made of."""

    sym: Sym
    is_attrs: bool
    fields: tuple[FieldModel, ...]
    members: tuple[tuple[str, str], ...] = ()
    """An enum's members `(name, value as a literal)`, in definition order,
    aliases left out (as iterating the enum gives them); empty otherwise."""

    @property
    def qualname(self) -> str:
        """`package.module.Name`."""
        return self.sym.qualname


@frozen
class MessageModel:
    """A message class of an entity, and the ref method that sends it."""

    cls: ClassModel
    method: str
    reply: TypeExpr | None = None
    """`R` of the class's `reply_to: Address[R]` field, if it has one: the ref
    method then returns a `Request[State, R]`, which `eco.ask` reads."""

    @property
    def name(self) -> str:
        """The class name."""
        return self.cls.sym.name

    @property
    def fields(self) -> tuple[FieldModel, ...]:
        """The class's init parameters, in `__init__` order."""
        return self.cls.fields


@frozen
class EntityModel:
    """One entity class: `class Account(Entity[AccountId, AccountMsg, AccountState])`."""

    sym: Sym
    name: str
    """The entity type name (snake_case of the class name): the factory's name too."""
    path: str
    line: int
    id_type: TypeExpr
    message_type: TypeExpr
    """As written in `Entity[...]` (an alias stays an alias)."""
    messages: tuple[MessageModel, ...]
    """Sorted by method name."""
    state_type: TypeExpr
    state_version: int
    upgrades: tuple[int, ...]
    """The `from_version`s of the class's `@upgrade` functions, sorted."""
    result_type: TypeExpr | None = None
    """For a worker (`Worker[Request, Result]`), its result type; None for an entity."""

    @property
    def is_worker(self) -> bool:
        """Whether this is a worker: id 0, state `WorkerState`, requests as messages."""
        return self.result_type is not None

    event_type: TypeExpr | None = None
    """An event-sourced entity's event type as written in `EventSourced[...]`."""
    events: tuple[ClassModel, ...] = ()
    """An event-sourced entity's event classes, sorted by name."""
    upcasts: tuple[tuple[str, int], ...] = ()
    """`(event class name, from_version)` of its `@upcast` functions, sorted."""

    def event_version(self, event: str) -> int:
        """An event class's version: 1 + its upcasters."""
        return 1 + sum(1 for name, _ in self.upcasts if name == event)

    @property
    def ref_class(self) -> str:
        """`AccountRef`."""
        return f"{self.sym.name}Ref"

    @property
    def canonical_state(self) -> str:
        """The state type, fully qualified, aliases and NewTypes expanded."""
        return canonical(self.state_type)

    @property
    def canonical_id(self) -> str:
        """The id type, fully qualified, aliases and NewTypes expanded."""
        return canonical(self.id_type)


@frozen
class PackageModel:
    """Every entity of a package, sorted by name, and the classes they are made of."""

    package: str
    """The import name, `examples.bank`."""
    command_path: str
    """`examples/bank`, for the regenerate command in the header."""
    entities: tuple[EntityModel, ...]
    classes: Mapping[str, ClassModel]
    """Every package class reachable from a message or a state type, by
    qualified name (for structural fingerprints of state)."""
