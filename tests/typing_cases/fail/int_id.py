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
Shard.address("3")  # E: Argument 1 to "address" of "Entity" has incompatible type "str"; expected "int"
Shard.address(3.0)  # E: Argument 1 to "address" of "Entity" has incompatible type "float"; expected "int"
refs.log("7")  # E: Argument 1 to "log" has incompatible type "str"; expected "int"
refs.tally(7)  # E: Argument 1 to "tally" has incompatible type "int"; expected "TallyId"
