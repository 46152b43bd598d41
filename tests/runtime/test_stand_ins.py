"""`REGISTRY.replacing(Entity, StandIn)`: a stand-in runs in place of an
entity, addressed by the same refs, on every ecosystem (the pytest fixture
takes the replaced registry like any other)."""

from __future__ import annotations

import pytest

from examples.bank.account import Account, AccountId, AccountMsg, AccountState, Deposit
from examples.bank.refs import REGISTRY, account
from examples.counter.counter import Counter
from pachytype import Activation, Entity, Simulation
from pachytype.testing import EcosystemFactory


class GenerousAccount(Account):
    """Every deposit counts double."""

    def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
        if isinstance(msg, Deposit):
            return [], AccountState(state.balance + 2 * msg.amount)
        return super().activate(msg, state)


GENEROUS = REGISTRY.replacing(Account, GenerousAccount)
ALICE = account(AccountId("alice"))


async def test_the_stand_in_runs_in_place_of_the_entity(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(GENEROUS) as eco:
        assert await eco.call(ALICE.deposit(amount=5)) == AccountState(10)
        # Transfers still go through the same refs, to the stand-in.
        await eco.call(ALICE.transfer(amount=4, to=AccountId("bob")))
        await eco.settle()
        assert await eco.state(account(AccountId("bob"))) == AccountState(8)


async def test_the_original_registry_is_unchanged(ecosystem: EcosystemFactory) -> None:
    async with ecosystem(REGISTRY) as eco:
        assert await eco.call(ALICE.deposit(amount=5)) == AccountState(5)


def test_a_replaced_registry_keeps_names_types_and_fingerprint() -> None:
    etype = GENEROUS.get("account")
    original = REGISTRY.get("account")
    assert etype.entity is GenerousAccount and original.entity is Account
    assert (etype.name, etype.messages, etype.state) == (
        "account",
        original.messages,
        original.state,
    )
    assert GENEROUS.fingerprint == REGISTRY.fingerprint
    assert GENEROUS.replaced == {"account": GenerousAccount}
    assert "account->GenerousAccount" in repr(GENEROUS)
    result = Simulation(GENEROUS).run([ALICE.deposit(amount=1)])
    assert result.state(ALICE) == AccountState(2)


def test_only_an_entity_of_the_registry_can_be_replaced() -> None:
    with pytest.raises(
        ValueError, match=r"has no entity 'Counter' to replace \(its entity types: \['account'"
    ):
        REGISTRY.replacing(Counter, Counter)


def test_the_stand_in_must_keep_the_state_version() -> None:
    class Older(Entity[AccountId, AccountMsg, AccountState]):
        def activate(self, msg: AccountMsg, state: AccountState) -> Activation[AccountState]:
            return [], state

    with pytest.raises(ValueError, match="has state_version 1, the entity has 2"):
        REGISTRY.replacing(Account, Older)
