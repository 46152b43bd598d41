"""Entities: the user's declaration of an id type, a message type, a state type
and a pure `activate(msg, state) -> (envelopes, new_state)`.

Also owns `@upgrade`, the versioned-state upgraders an entity class declares.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

from pachytype._address import CancelTimer, Envelope, Ref, make_ref
from pachytype._names import snake_case

Id = TypeVar("Id", bound=Hashable)
Msg = TypeVar("Msg")
State = TypeVar("State")
S = TypeVar("S")

Activation: TypeAlias = tuple[Sequence[Envelope[Any] | CancelTimer], S]
"""What `activate` returns: the envelopes to send (and keyed timers to
cancel: `address.cancel_timer(key)`) and the new state."""

RawState: TypeAlias = Any
"""Unstructured stored state (dicts, lists, str, int, float, bool, None)."""


class Upgrade:
    """A versioned-state upgrader: raw data of `from_version` in, raw data of
    `from_version + 1` out. Made by `@upgrade`; collected by the entity class."""

    __slots__ = ("fn", "from_version")

    def __init__(self, fn: Callable[[RawState], RawState], from_version: int) -> None:
        self.fn = fn
        self.from_version = from_version

    def __call__(self, raw: RawState) -> RawState:
        return self.fn(raw)

    def __repr__(self) -> str:
        return f"<upgrade {self.fn.__qualname__} from version {self.from_version}>"


def upgrade(*, from_version: int) -> Callable[[Callable[[RawState], RawState]], Upgrade]:
    """Declare, inside an entity class, how stored state of `from_version` becomes
    `from_version + 1`. The function takes and returns raw data (no `self`)::

        class Account(Entity[str, AccountMsg, AccountState]):
            state_version = 2

            @upgrade(from_version=1)
            def _cents(raw: dict[str, Any]) -> dict[str, Any]:
                return {"balance": raw["balance"] * 100}
    """
    if from_version < 1:
        raise ValueError(f"@upgrade(from_version=...) takes a version >= 1, got {from_version!r}")

    def wrap(fn: Callable[[RawState], RawState]) -> Upgrade:
        return Upgrade(fn, from_version)

    return wrap


class Entity(Generic[Id, Msg, State]):
    """Base class of every entity: `Entity[Id, Msg, State]`.

    Subclasses define `activate` (and optionally `init` and `state_version`)::

        class Counter(Entity[str, Increment | Reset, int]):
            def init(self, id: str) -> int:
                return 0

            def activate(self, msg: Increment | Reset, state: int) -> Activation[int]:
                match msg:
                    case Increment():
                        return [], state + 1
                    case Reset():
                        return [], 0

    `activate` must be pure: no I/O, no awaiting, no ecosystem calls. Its only
    effects are the envelopes it returns and the new state.
    """

    state_version: ClassVar[int] = 1
    """Version of the state's shape; bump it (and add an `@upgrade`) on change."""

    activation_budget: ClassVar[float | None] = None
    """Seconds one `activate` (or `init`) may run before it is interrupted and
    its message dead-lettered (`ActivationTimeoutError`); None: the
    ecosystem's `activation_budget` (default `pachytype._budget.DEFAULT_BUDGET`)."""

    entity_type: ClassVar[str]
    """The entity type's name in addresses: the class name in snake_case."""

    upgrades: ClassVar[dict[int, Upgrade]]
    """`from_version -> Upgrade`, collected from `@upgrade` methods."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.entity_type = snake_case(cls.__name__)
        found: dict[int, Upgrade] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Upgrade):
                    if value.from_version in found and found[value.from_version] is not value:
                        raise TypeError(
                            f"entity {cls.__name__}: two @upgrade(from_version="
                            f"{value.from_version}) functions ({name} and "
                            f"{found[value.from_version].fn.__name__}); keep one"
                        )
                    found[value.from_version] = value
        cls.upgrades = found

    def init(self, id: Id) -> State:
        """The state of an entity never seen before (default `None`)."""
        return None  # type: ignore[return-value]

    def activate(self, msg: Msg, state: State) -> Activation[State]:
        """Handle one message: return the envelopes to send and the new state."""
        raise NotImplementedError(
            f"entity {type(self).__name__} must define activate(self, msg, state)"
        )

    @classmethod
    def address(cls: type[Entity[Id, Msg, State]], id: Id) -> Ref[Msg, State]:
        """The typed address of the instance `id` of this entity type."""
        return make_ref(Ref, cls.entity_type, id)
