"""`pachytype inspect` and `pachytype migrate` on LocalDisk databases."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from examples.bank import refs as bank
from examples.bank.account import AccountId
from pachytype import ActivationError, LocalDisk
from pachytype._cli.migrate import Outcome, migrate_batch
from pachytype._codec import Codec
from pachytype._sqlite.schema import connect
from pachytype.cli import main
from tests.bank_v1.registry import REGISTRY as BANK_V1

BANK = "examples.bank.refs:REGISTRY"


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


async def make_small_bank(db: Path) -> None:
    async with LocalDisk(db, bank.REGISTRY) as eco:
        await eco.call(bank.account(AccountId("alice")).deposit(amount=12_34))
        with pytest.raises(ActivationError):
            await eco.call(bank.account(AccountId("bob")).withdraw(amount=5))
        await eco.send(bank.account(AccountId("carol")).deposit(amount=1).after(timedelta(hours=1)))


async def test_inspect_shows_entities_mailboxes_timers_and_dead_letters(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_small_bank(db)
    result = CliRunner().invoke(main, ["inspect", "--db", str(db), BANK], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "entities" in out and "alice" in out and "AccountState(balance=1234)" in out
    assert "delayed messages" in out and "carol" in out and "Deposit(amount=1)" in out
    assert "dead letters" in out and "Withdraw(amount=5)" in out


async def test_inspect_json_is_for_scripts(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_small_bank(db)
    result = CliRunner().invoke(main, ["inspect", "--db", str(db), BANK, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    alice = next(e for e in data["entities"] if e["id"] == "alice")
    assert alice["state"] == "AccountState(balance=1234)"
    assert alice["version"] == 2 and alice["pending"] == 0
    (timer,) = data["timers"]
    assert timer["to"] == "carol" and 3500 < timer["due_in_s"] <= 3600
    (dead,) = data["dead_letters"]
    assert dead["to"] == "bob" and dead["message"] == "Withdraw(amount=5)"
    assert dead["error"].startswith("InsufficientFunds: withdrawal of 0.05 refused")


def test_inspect_says_clearly_when_the_file_is_not_a_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", "--db", str(tmp_path / "nope.db"), BANK])
    assert result.exit_code != 0
    assert "cannot read" in result.output and "as a LocalDisk database" in result.output


async def make_v1_bank(db: Path, accounts: int) -> None:
    async with LocalDisk(db, BANK_V1) as eco:
        await eco.send(
            *(bank.account(AccountId(f"a{i:03}")).deposit(amount=i) for i in range(accounts))
        )
        await eco.settle()


async def test_migrate_upgrades_every_state_in_batches_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_v1_bank(db, 25)
    assert rows(db, "SELECT DISTINCT version FROM entities") == [(1,)]
    result = CliRunner().invoke(main, ["migrate", "--db", str(db), BANK, "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "upgraded 25 state(s)" in result.output
    assert rows(db, "SELECT DISTINCT version FROM entities") == [(2,)]
    assert rows(db, "SELECT state FROM entities WHERE eid = 'a007'") == [(b'{"balance":700}',)]
    again = CliRunner().invoke(main, ["migrate", "--db", str(db), BANK])
    assert again.exit_code == 0 and "upgraded 0 state(s)" in again.output
    async with LocalDisk(db, bank.REGISTRY) as eco:
        assert (await eco.state(bank.account(AccountId("a007")))).balance == 700


async def test_an_interrupted_migration_resumes_where_it_stopped(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_v1_bank(db, 10)
    conn = connect(db)
    migrate_batch(conn, Codec(bank.REGISTRY), "account", 2, "", 3, Outcome())  # then "killed"
    conn.close()
    assert rows(db, "SELECT version, count(*) FROM entities GROUP BY version") == [(1, 7), (2, 3)]
    result = CliRunner().invoke(main, ["migrate", "--db", str(db), BANK])
    assert "upgraded 7 state(s)" in result.output
    assert rows(db, "SELECT sum(json_extract(state, '$.balance')) FROM entities") == [(4500,)]


async def test_migrate_leaves_what_it_cannot_upgrade_and_exits_1(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_v1_bank(db, 3)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE entities SET version = 7 WHERE eid = 'a001'")
    conn.execute("UPDATE entities SET version = 0 WHERE eid = 'a002'")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(main, ["migrate", "--db", str(db), BANK])
    assert result.exit_code == 1
    assert "not upgraded account 'a002'" in result.output
    assert rows(db, "SELECT eid, version, state FROM entities ORDER BY eid") == [
        ("a000", 2, b'{"balance":0}'),
        ("a001", 7, b'{"balance":1}'),
        ("a002", 0, b'{"balance":2}'),
    ]


async def test_migrate_refuses_to_run_beside_a_live_ecosystem(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await make_v1_bank(db, 1)
    async with LocalDisk(db, BANK_V1):
        result = CliRunner().invoke(main, ["migrate", "--db", str(db), BANK])
    assert result.exit_code != 0
    assert "is already open by another LocalDisk" in result.output


def test_inspect_and_migrate_say_what_they_need(tmp_path: Path) -> None:
    for command in ("inspect", "migrate"):
        result = CliRunner().invoke(main, [command, "--db", str(tmp_path / "x.db")])
        assert result.exit_code == 2
        assert "give --db PATH and MODULE:REGISTRY" in result.output
