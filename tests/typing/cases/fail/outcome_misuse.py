"""An outcome's states are the ref's state type, not anything else."""

from __future__ import annotations

from examples.bank.account import AccountId
from examples.bank.refs import REGISTRY, account
from pachytype import Simulation


def misuse() -> str:
    outcome = Simulation(REGISTRY).exhaust([]).outcomes[0].outcome
    maybe = outcome.get(account(AccountId("a")))
    print(maybe.balance)  # E: Item "None" of "AccountState | None" has no attribute "balance"  # P: "balance" is not a known attribute of "None"
    text: str = outcome.get(account(AccountId("a")), "none")  # E: Incompatible types in assignment  # P: Type "AccountState | str" is not assignable to declared type "str"
    return text
