"""Entity declarations mypy refuses: unhashable ids, a non-int version, an
`init` or `upgrade` of the wrong shape, the wrong number of type arguments."""

from __future__ import annotations

from typing import Any

from examples.counter.counter import CounterMsg, Increment
from pachytype import Activation, Entity, upgrade


class Unhashable(Entity[list[int], Increment, int]):  # E: Type argument "list[int]" of "Entity" must be a subtype of "Hashable"
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [], state


class Versioned(Entity[str, Increment, int]):
    state_version = "2"  # E: Incompatible types in assignment (expression has type "str", base class "Entity" defined the type as "int")

    def init(self, id: int) -> int:  # E: Argument 1 of "init" is incompatible with supertype "pachytype._entity.Entity"; supertype defines the argument type as "str"
        return id

    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [], state

    @upgrade(from_version="1")  # E: Argument "from_version" to "upgrade" has incompatible type "str"; expected "int"
    def _v2(raw: Any) -> Any:
        return raw

    @upgrade(version=2)  # E: Unexpected keyword argument "version" for "upgrade"
    def _v3(raw: Any) -> Any:
        return raw


class TwoArgs(Entity[str, CounterMsg]):  # E: "Entity" expects 3 type arguments, but 2 given  # E: Missing type arguments for generic type "Entity"
    pass
