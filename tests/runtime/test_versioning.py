"""Versioned state: stored state is upgraded on load by the `@upgrade` chain; a
version the code cannot reach is refused, naming entity, id and versions, and
the stored bytes are left exactly as they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

from examples.bank import refs as bank
from examples.bank.account import Account, AccountId, AccountState
from pachytype import Activation, DecodeError, Entity, LocalDisk, StateVersionError, upgrade
from pachytype._codec import Codec
from pachytype._versioning import upgrade_raw
from tests.bank_v1 import account as v1
from tests.bank_v1.registry import REGISTRY as BANK_V1

ALICE = AccountId("alice")


@frozen
class Tick:
    """Nothing happens."""


class Meter(Entity[str, Tick, dict[str, Any]]):
    """State version 4: v1 `n` -> v2 `count` -> v3 adds `unit` -> v4 upper-cases it."""

    state_version = 4

    def activate(self, msg: Tick, state: dict[str, Any]) -> Activation[dict[str, Any]]:
        return [], state

    @upgrade(from_version=1)
    def _rename(raw: dict[str, Any]) -> dict[str, Any]:
        return {"count": raw["n"]}

    @upgrade(from_version=2)
    def _unit(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "unit": "kwh"}

    @upgrade(from_version=3)
    def _upper(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "unit": raw["unit"].upper()}


class Gappy(Entity[str, Tick, int]):
    """Version 4 with no upgrader from 2."""

    state_version = 4

    def activate(self, msg: Tick, state: int) -> Activation[int]:
        return [], state

    @upgrade(from_version=1)
    def _one(raw: int) -> int:
        return raw

    @upgrade(from_version=3)
    def _three(raw: int) -> int:
        return raw


class Broken(Entity[str, Tick, int]):
    """Its only upgrader raises on negative numbers."""

    state_version = 2

    def activate(self, msg: Tick, state: int) -> Activation[int]:
        return [], state

    @upgrade(from_version=1)
    def _positive(raw: int) -> int:
        if raw < 0:
            raise ValueError(f"cannot upgrade a negative reading {raw}")
        return raw * 10


def test_the_chain_runs_in_order_from_the_stored_version() -> None:
    assert upgrade_raw(Meter, "m1", {"n": 3}, 1) == {"count": 3, "unit": "KWH"}
    assert upgrade_raw(Meter, "m1", {"count": 3}, 2) == {"count": 3, "unit": "KWH"}
    assert upgrade_raw(Meter, "m1", {"count": 3, "unit": "kwh"}, 3) == {"count": 3, "unit": "KWH"}


def test_the_current_version_is_left_alone() -> None:
    raw = {"count": 1, "unit": "W"}
    assert upgrade_raw(Meter, "m1", raw, 4) is raw


def test_a_version_newer_than_the_code_is_refused() -> None:
    with pytest.raises(StateVersionError) as error:
        upgrade_raw(Meter, "m1", {}, 5)
    assert str(error.value) == (
        "entity 'meter' (id 'm1'): stored state has version 5, the code's state_version is "
        "4: it was written by newer code; the stored state is kept unchanged and the "
        "entity's messages wait; run the code that declares state_version = 5 (or newer) "
        "for Meter"
    )
    assert (error.value.entity_type, error.value.id) == ("meter", "m1")
    assert (error.value.stored, error.value.current) == (5, 4)


def test_a_gap_in_the_chain_is_refused() -> None:
    with pytest.raises(StateVersionError) as error:
        upgrade_raw(Gappy, "g", 7, 1)
    assert str(error.value) == (
        "entity 'gappy' (id 'g'): stored state has version 1, the code's state_version is "
        "4: no upgrade chain reaches 4 (missing @upgrade(from_version=2)); the stored state "
        "is kept unchanged and the entity's messages wait; add it to Gappy"
    )
    assert upgrade_raw(Gappy, "g", 7, 3) == 7  # from 3 the chain is whole


def test_a_raising_upgrader_is_named_and_chained() -> None:
    with pytest.raises(StateVersionError) as error:
        upgrade_raw(Broken, "b", -1, 1)
    assert str(error.value) == (
        "entity 'broken' (id 'b'): stored state has version 1, the code's state_version is "
        "2: @upgrade(from_version=1) (Broken._positive) raised ValueError: cannot upgrade a "
        "negative reading -1; the stored state is kept unchanged and the entity's messages "
        "wait; fix that upgrader"
    )
    assert isinstance(error.value.__cause__, ValueError)
    assert upgrade_raw(Broken, "b", 2, 1) == 20


def test_a_version_below_one_is_damaged_data() -> None:
    with pytest.raises(StateVersionError, match="versions start at 1"):
        upgrade_raw(Meter, "m", {}, 0)


def test_bank_v1_bytes_decode_into_cents() -> None:
    data = Codec(BANK_V1).encode_state("account", v1.AccountState(balance=7))
    assert data == b'{"balance":7}'
    new = Codec(bank.REGISTRY)
    assert new.decode_state("account", ALICE, data, 1) == AccountState(balance=700)
    assert new.decode_state("account", ALICE, b'{"balance":700}', 2) == AccountState(700)
    assert Account.state_version == 2


def test_an_upgrade_whose_output_does_not_fit_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as error:
        Codec(bank.REGISTRY).decode_state("account", ALICE, b'{"balance":"7"}', 1)
    assert str(error.value) == (
        "cannot decode the state of entity 'account' (id 'alice'): at $.balance: expected "
        f"an int, got '{'7' * 100}'; the "
        "@upgrade chain from version 1 to 2 produced data that does not fit AccountState: fix "
        "the upgraders"
    )


async def test_bank_upgrades_state_stored_by_the_v1_code(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    async with LocalDisk(path, BANK_V1) as eco:  # the old code: whole units
        await eco.send(bank.account(ALICE).deposit(amount=7))
        await eco.settle()
        assert (await eco.state(bank.account(ALICE))).balance == 7
    async with LocalDisk(path, bank.REGISTRY) as eco:  # the new code: cents
        assert await eco.state(bank.account(ALICE)) == AccountState(balance=700)
        assert await eco.call(bank.account(ALICE).deposit(amount=50)) == AccountState(750)
    async with LocalDisk(path, bank.REGISTRY) as eco:  # now stored at version 2
        assert await eco.state(bank.account(ALICE)) == AccountState(balance=750)


async def test_state_newer_than_the_code_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    async with LocalDisk(path, bank.REGISTRY) as eco:  # version 2 writes cents
        await eco.call(bank.account(ALICE).deposit(amount=5))
    stored = _stored_state(path)
    async with LocalDisk(path, BANK_V1) as eco:  # an older deploy
        with pytest.raises(StateVersionError) as error:
            await eco.state(bank.account(ALICE))
        assert str(error.value).startswith(
            "entity 'account' (id 'alice'): stored state has version 2, the code's "
            "state_version is 1: it was written by newer code;"
        )
        await eco.send(bank.account(ALICE).deposit(amount=1))
        await eco.settle()
    assert _stored_state(path) == stored  # never overwritten, never replaced by init


async def test_messages_wait_until_code_that_reads_the_state_runs(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    async with LocalDisk(path, bank.REGISTRY) as eco:
        await eco.call(bank.account(ALICE).deposit(amount=5))
    async with LocalDisk(path, BANK_V1) as eco:  # cannot read version 2: holds alice
        await eco.send(bank.account(ALICE).deposit(amount=1))
        await eco.settle()
        assert await eco.dead_letters() == []
    async with LocalDisk(path, bank.REGISTRY) as eco:  # fixed: the deposit is delivered
        await eco.settle()
        assert await eco.state(bank.account(ALICE)) == AccountState(balance=6)


def _stored_state(path: Path) -> list[tuple[Any, ...]]:
    """`(entity type, id, state bytes, version)` of every stored entity."""
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT etype, eid, state, version FROM entities"))
