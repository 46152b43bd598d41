"""A stand-in with the entity's id, message and state types replaces it."""

from __future__ import annotations

from examples.bank.account import Account, AccountId, AccountMsg, AccountState, Deposit
from examples.bank.refs import REGISTRY, account
from pachytype import Activation, Entity, Registry, Simulation


class GenerousAccount(Account):
    """A subclass: every deposit counts double."""

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        if isinstance(msg, Deposit):
            return [], AccountState(state.balance + 2 * msg.amount)
        return super().activate(msg, state)


class FrozenAccount(Entity[AccountId, AccountMsg, AccountState]):
    """Not a subclass, same types: nothing moves."""

    state_version = 2

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        return [], state


def balances() -> tuple[int, int]:
    generous: Registry = REGISTRY.replacing(Account, GenerousAccount)
    frozen = REGISTRY.replacing(Account, FrozenAccount)
    deposit = account(AccountId("a")).deposit(amount=5)
    first = Simulation(generous).run([deposit]).state(account(AccountId("a")))
    second = Simulation(frozen).run([deposit]).state(account(AccountId("a")))
    return first.balance, second.balance
