"""Account, state version 1: the balance in whole currency units."""

from __future__ import annotations

from attrs import frozen

from examples.bank.account import AccountId, AccountMsg, Deposit, Transfer, Withdraw
from pachytype import Activation, Entity


@frozen
class AccountState:
    """The balance, in whole currency units."""

    balance: int = 0


class Account(Entity[AccountId, AccountMsg, AccountState]):
    """One bank account (version 1: no overdraft checks needed for the test)."""

    state_version = 1

    def init(self, id: AccountId) -> AccountState:
        return AccountState()

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        match msg:
            case Deposit(amount=amount):
                return [], AccountState(state.balance + amount)
            case Withdraw(amount=amount) | Transfer(amount=amount):
                return [], AccountState(state.balance - amount)
