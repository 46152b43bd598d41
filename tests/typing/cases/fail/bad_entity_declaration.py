"""Entity declarations mypy refuses: unhashable ids, a non-int version, an
`init` or `upgrade` of the wrong shape, the wrong number of type arguments."""

from __future__ import annotations

from typing import Any

from examples.counter.counter import CounterMsg, Increment
from pachytype import Activation, Entity, upgrade


class Unhashable(Entity[list[int], Increment, int]):  # E: Type argument "list[int]" of "Entity" must be a subtype of "Hashable"  # P: Type "list[int]" cannot be assigned to type variable "Id@Entity"
    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [], state


class Versioned(Entity[str, Increment, int]):
    state_version = "2"  # E: Incompatible types in assignment (expression has type "str", base class "Entity" defined the type as "int")  # P: Type "Literal['2']" is not assignable to declared type "int"

    def init(self, id: int) -> int:  # E: Argument 1 of "init" is incompatible with supertype "pachytype._entity.Entity"; supertype defines the argument type as "str"  # P: Method "init" overrides class "Entity" in an incompatible manner
        return id

    def activate(self, msg: Increment, state: int) -> Activation[int]:
        return [], state

    @upgrade(from_version="1")  # E: Argument "from_version" to "upgrade" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['1']" cannot be assigned to parameter "from_version" of type "int" in function "upgrade"
    def _v2(raw: Any) -> Any:
        return raw

    @upgrade(version=2)  # E: Unexpected keyword argument "version" for "upgrade"  # P: Argument missing for parameter "from_version"  # P: No parameter named "version"
    def _v3(raw: Any) -> Any:
        return raw


class TwoArgs(Entity[str, CounterMsg]):  # E: "Entity" expects 3 type arguments, but 2 given  # E: Missing type arguments for generic type "Entity"  # P: Too few type arguments provided for "Entity"; expected 3 but received 2
    pass
