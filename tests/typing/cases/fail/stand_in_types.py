"""A stand-in must have the entity's id, message and state types."""

from __future__ import annotations

from examples.bank.account import Account, AccountId, AccountMsg, AccountState, Deposit
from examples.bank.refs import REGISTRY
from examples.counter.counter import Counter
from pachytype import Activation, Entity


class WrongId(Entity[str, AccountMsg, AccountState]):
    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        return [], state


class FewerMessages(Entity[AccountId, Deposit, AccountState]):
    def activate(self, msg: Deposit, state: AccountState) -> Activation[AccountState]:
        return [], state


class WrongState(Entity[AccountId, AccountMsg, int]):
    def activate(self, msg: AccountMsg, state: int) -> Activation[int]:
        return [], state


REGISTRY.replacing(Account, WrongId)  # E: Cannot infer value of type parameter "Id"  # P: Argument of type "type[Account]" cannot be assigned to parameter "entity"
REGISTRY.replacing(Account, FewerMessages)  # E: Cannot infer value of type parameter "M"  # P: Argument of type "type[FewerMessages]" cannot be assigned to parameter "stand_in"
REGISTRY.replacing(Account, WrongState)  # E: Cannot infer value of type parameter "S"  # P: Argument of type "type[WrongState]" cannot be assigned to parameter "stand_in"
REGISTRY.replacing(Account, Counter)  # E: type parameter "Id"  # E: type parameter "M"  # E: type parameter "S"  # P: Argument of type "type[Counter]" cannot be assigned to parameter "stand_in"
