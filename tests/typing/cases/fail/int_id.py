"""The wrong id type for an entity whose ids are ints."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Entity
from tests.conformance import refs


@frozen
class Hit:
    pass


class Shard(Entity[int, Hit, int]):
    def activate(self, msg: Hit, state: int) -> Activation[int]:
        return [], state + 1


Shard.address(3)  # fine
Shard.address("3")  # E: Argument 1 to "address" of "Entity" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['3']" cannot be assigned to parameter "id" of type "int" in function "address"
Shard.address(3.0)  # E: Argument 1 to "address" of "Entity" has incompatible type "float"; expected "int"  # P: Argument of type "float" cannot be assigned to parameter "id" of type "int" in function "address"
refs.log("7")  # E: Argument 1 to "log" has incompatible type "str"; expected "int"  # P: Argument of type "Literal['7']" cannot be assigned to parameter "id" of type "int" in function "log"
refs.tally(7)  # E: Argument 1 to "tally" has incompatible type "int"; expected "TallyId"  # P: Argument of type "Literal[7]" cannot be assigned to parameter "id" of type "TallyId" in function "tally"
