"""Ecosystems are opened with a package's REGISTRY, and the ref from
`Entity.address` only has `post` (the message methods are generated)."""

from __future__ import annotations

from examples.bank import refs as bank_refs
from examples.bank.account import AccountId
from examples.bank.refs import REGISTRY
from examples.counter.counter import Counter, CounterId, Increment
from pachytype import Ecosystem, InMemory, LocalDisk, Simulation

InMemory(bank_refs)  # E: Argument 1 to "InMemory" has incompatible type Module; expected "Registry"  # P: Argument of type "Module("examples.bank.refs")" cannot be assigned to parameter "registry" of type "Registry" in function "__init__"
InMemory(REGISTRY.types)  # E: Argument 1 to "InMemory" has incompatible type "dict[str, EntityType]"; expected "Registry"  # P: Argument of type "dict[str, EntityType]" cannot be assigned to parameter "registry" of type "Registry" in function "__init__"
LocalDisk("bank.db")  # E: Missing positional argument "registry" in call to "LocalDisk"  # P: Argument missing for parameter "registry"
LocalDisk(REGISTRY, "bank.db")  # E: Argument 1 to "LocalDisk" has incompatible type "Registry"; expected "str | PathLike[str]"  # E: Argument 2 to "LocalDisk" has incompatible type "str"; expected "Registry"  # P: Argument of type "Registry" cannot be assigned to parameter "path" of type "str | PathLike[str]" in function "__init__"  # P: Argument of type "Literal['bank.db']" cannot be assigned to parameter "registry" of type "Registry" in function "__init__"
Simulation(REGISTRY).run([Increment()])  # E: List item 0 has incompatible type "Increment"; expected "Envelope[Any]"  # P: Argument of type "list[Increment]" cannot be assigned to parameter "envelopes" of type "Iterable[Envelope[Any]]" in function "run"
Counter.address(CounterId("c")).increment()  # E: "Ref[Increment | Add | Reset, int]" has no attribute "increment"  # P: Cannot access attribute "increment" for class "Ref[CounterMsg, int]"
bank_refs.account(AccountId("a")).balance  # E: "AccountRef" has no attribute "balance"  # P: Cannot access attribute "balance" for class "AccountRef"


async def letters(eco: Ecosystem) -> None:
    (await eco.dead_letters())[0].balance  # E: "DeadLetter" has no attribute "balance"  # P: Cannot access attribute "balance" for class "DeadLetter"
    eco.registry = None  # E: Incompatible types in assignment (expression has type "None", variable has type "Registry")  # P: Cannot assign to attribute "registry" for class "Ecosystem"
