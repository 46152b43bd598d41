"""An `activate` that forgets a message class (exhaustive-match; `assert_never` names it)."""

from __future__ import annotations

from typing import assert_never

from attrs import frozen

from examples.bank.account import AccountMsg, AccountState, Deposit, Transfer, Withdraw
from examples.counter.counter import Add, CounterMsg, Increment
from pachytype import Activation, Entity


class ForgetfulCounter(Entity[str, CounterMsg, int]):
    def activate(self, msg: CounterMsg, state: int) -> Activation[int]:  # E: Missing return statement  # P: Function with declared return type "Activation[int]" must return value on all code paths
        match msg:  # E: Match statement has unhandled case for values of type "Reset"  # P: Cases within match statement do not exhaustively handle all values
            case Increment():
                return [], state + 1
            case Add(amount=n):
                return [], state + n


class LenientAccount(Entity[str, AccountMsg, AccountState]):
    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        match msg:  # E: Match statement has unhandled case for values of type "Transfer"  # P: Cases within match statement do not exhaustively handle all values
            case Deposit(amount=a):
                return [], AccountState(state.balance + a)
            case Withdraw(amount=a):
                return [], AccountState(state.balance - a)
        return [], state


@frozen
class Stop:
    pass


class Listener(Entity[str, Deposit | Transfer | Stop, int]):
    def activate(self, msg: Deposit | Transfer | Stop, state: int) -> Activation[int]:
        match msg:  # E: Match statement has unhandled case for values of type "Transfer | Stop"  # P: Cases within match statement do not exhaustively handle all values
            case Deposit():
                return [], state + 1
        return [], state


class Narrower(Entity[str, CounterMsg, int]):
    def activate(self, msg: Increment, state: int) -> Activation[int]:  # E: Argument 1 of "activate" is incompatible with supertype "pachytype._entity.Entity"; supertype defines the argument type as "Increment | Add | Reset"  # P: Method "activate" overrides class "Entity" in an incompatible manner
        return [], state + 1


class EndsInAssertNever(Entity[str, CounterMsg, int]):
    def activate(self, msg: CounterMsg, state: int) -> Activation[int]:
        match msg:
            case Increment():
                return [], state + 1
            case Add(amount=n):
                return [], state + n
            case _:
                assert_never(msg)  # E: Argument 1 to "assert_never" has incompatible type "Reset"; expected "Never"  # P: Argument of type "Reset" cannot be assigned to parameter "arg" of type "Never"
