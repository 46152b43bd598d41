"""`pachytype inspect --dsn` and `pachytype migrate --dsn` on a PostgreSQL
schema, and what the PostgreSQL commands say when the operator gets
something wrong (one line, no traceback, no password)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest
from click.testing import CliRunner, Result

from examples.bank import refs as bank
from examples.bank.account import AccountId
from pachytype import ActivationError, Postgres
from pachytype._codec import Codec
from pachytype._postgres.inspect import StateMigration, migrate_batch
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)
from pachytype._registry import Registry
from pachytype.cli import main
from tests.bank_v1.registry import REGISTRY as BANK_V1
from tests.events_pkg import refs as events
from tests.events_pkg.cart import Added, CartId, CartState
from tests.events_pkg.tally import Counted

BANK = "examples.bank.refs:REGISTRY"
BANK_V1_NAME = "tests.bank_v1.registry:REGISTRY"


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    dsn = require_postgres()
    name = new_schema_name("pt_cli")
    yield dsn, name
    drop_schemas(dsn, [name])


def run(*args: str, dsn: str | None) -> Result:
    """`pachytype ARGS` with the DSN in PACHYTYPE_DSN only (never on the command line)."""
    env = {"PACHYTYPE_DSN": dsn, "COLUMNS": "250"}
    return CliRunner().invoke(main, list(args), env=env)


async def pachytype(*args: str, dsn: str | None) -> Result:
    """`run` for async tests: the command runs its own event loop, in a thread."""
    return await asyncio.to_thread(run, *args, dsn=dsn)


def eco(dsn: str, schema: str, registry: Registry = bank.REGISTRY, **kw: object) -> Postgres:
    return Postgres(dsn, registry, schema=schema, partitions=8, poll_interval=0.05, **kw)  # type: ignore[arg-type]


async def sql(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


async def make_small_bank(dsn: str, schema: str) -> None:
    """alice 12.34 (2 deposits waiting), bob's overdraft a dead letter (bob has
    no state: the activation failed), carol a delayed deposit, dave 3 deposits
    waiting and no state yet."""
    async with eco(dsn, schema) as node:
        await node.call(bank.account(AccountId("alice")).deposit(amount=12_34))
        with pytest.raises(ActivationError):
            await node.call(bank.account(AccountId("bob")).withdraw(amount=5))
    async with eco(dsn, schema, node=False) as client:  # no node runs: mail waits
        await client.send(
            bank.account(AccountId("carol")).deposit(amount=1).after(timedelta(hours=1))
        )
        await client.send(*(bank.account(AccountId("alice")).deposit(amount=1) for _ in range(2)))
        await client.send(*(bank.account(AccountId("dave")).deposit(amount=1) for _ in range(3)))


async def test_inspect_dsn_shows_entities_states_mailboxes_delayed_mail_and_dead_letters(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_small_bank(dsn, name)
    result = await pachytype("inspect", "--schema", name, BANK, "--json", dsn=dsn)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == name and data["partitions"] == 8 and data["nodes"] == []
    assert data["states"] == 1 and data["mail_due"] == 5 and data["mail_delayed"] == 1
    alice = next(e for e in data["entities"] if e["id"] == "alice")
    assert alice["state"] == "AccountState(balance=1234)" and alice["problem"] is None
    assert alice["version"] == 2 and alice["pending"] == 2 and alice["activations"] == 1
    assert data["mailboxes"] == [
        {"entity_type": "account", "id": "dave", "pending": 3},
        {"entity_type": "account", "id": "alice", "pending": 2},
    ]
    (timer,) = data["timers"]
    assert timer["to"] == "carol" and timer["message"] == "Deposit(amount=1)"
    assert 3500 < timer["due_in_s"] <= 3600
    (dead,) = data["dead_letters"]
    assert dead["to"] == "bob" and dead["message"] == "Withdraw(amount=5)"
    assert dead["error"].startswith("InsufficientFunds: withdrawal of 0.05 refused")
    table = await pachytype("inspect", "--schema", name, BANK, dsn=dsn)
    assert table.exit_code == 0, table.output
    for shown in (
        f"PostgreSQL ecosystem {name!r}",
        "AccountState(balance=1234)",
        "mailboxes (messages waiting)",
        "dave",
        "delayed messages",
        "Deposit(amount=1)",
        "dead letters",
        "Withdraw(amount=5)",
    ):
        assert shown in table.output, shown


async def test_inspect_dsn_without_a_registry_shows_what_is_stored(schema: tuple[str, str]) -> None:
    dsn, name = schema
    await make_small_bank(dsn, name)
    result = await pachytype("inspect", "--schema", name, "--json", dsn=dsn)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    alice = next(e for e in data["entities"] if e["id"] == "alice")
    assert alice["state"] == '{"balance":1234}'
    assert data["dead_letters"][0]["message"] == '["Withdraw",{"amount":5}]'
    table = await pachytype("inspect", "--schema", name, dsn=dsn)
    assert "give MODULE:REGISTRY" in table.output and '{"balance":1234}' in table.output


async def test_inspect_dsn_with_the_wrong_registry_says_so(schema: tuple[str, str]) -> None:
    dsn, name = schema
    await make_small_bank(dsn, name)
    result = await pachytype(
        "inspect", "--schema", name, "examples.usernames.refs:REGISTRY", dsn=dsn
    )
    assert result.exit_code == 0, result.output
    assert "entity types stored here that examples.usernames.refs:REGISTRY does not define" in (
        " ".join(result.output.split())
    )
    assert "UnknownEntityError" in result.output  # each state says why it is not decoded


async def make_v1_bank(dsn: str, schema: str, accounts: int) -> None:
    async with eco(dsn, schema, BANK_V1) as node:
        await node.send(
            *(bank.account(AccountId(f"a{i:03}")).deposit(amount=i) for i in range(accounts))
        )
        await node.settle()


async def versions(dsn: str, schema: str) -> list[tuple[int, int]]:
    rows = await sql(dsn, f"SELECT version, count(*) FROM {schema}.states GROUP BY 1 ORDER BY 1")
    return [(r[0], r[1]) for r in rows]


async def test_migrate_dsn_upgrades_every_state_in_batches_and_is_idempotent(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_v1_bank(dsn, name, 25)
    assert await versions(dsn, name) == [(1, 25)]
    result = await pachytype("migrate", "--schema", name, BANK, "--batch", "4", dsn=dsn)
    assert result.exit_code == 0, result.output
    assert "upgraded 25 state(s)" in result.output
    assert await versions(dsn, name) == [(2, 25)]
    (row,) = await sql(dsn, f"SELECT data FROM {name}.states WHERE entity_id = 'a007'")
    assert bytes(row[0]) == b'{"balance":700}'
    again = await pachytype("migrate", "--schema", name, BANK, dsn=dsn)
    assert again.exit_code == 0 and "upgraded 0 state(s)" in again.output
    async with eco(dsn, name, node=False) as client:
        assert (await client.state(bank.account(AccountId("a007")))).balance == 700


async def test_an_interrupted_dsn_migration_resumes_where_it_stopped(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_v1_bank(dsn, name, 10)
    conn = await asyncpg.connect(dsn)
    try:  # one batch of 3, then "killed"
        await migrate_batch(conn, name, Codec(bank.REGISTRY), "account", 2, "", 3, StateMigration())
    finally:
        await conn.close()
    assert await versions(dsn, name) == [(1, 7), (2, 3)]
    result = await pachytype("migrate", "--schema", name, BANK, dsn=dsn)
    assert result.exit_code == 0 and "upgraded 7 state(s)" in result.output
    (total,) = await sql(
        dsn, f"SELECT sum((convert_from(data, 'UTF8')::jsonb->>'balance')::int) FROM {name}.states"
    )
    assert total[0] == 4500


async def test_migrate_dsn_leaves_what_it_cannot_upgrade_and_exits_1(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_v1_bank(dsn, name, 3)
    await sql(dsn, f"UPDATE {name}.states SET version = 0 WHERE entity_id = 'a002'")
    result = await pachytype("migrate", "--schema", name, BANK, dsn=dsn)
    assert result.exit_code == 1
    assert "upgraded 2 state(s)" in result.output
    assert "not upgraded account 'a002'" in result.output
    rows = await sql(dsn, f"SELECT entity_id, version, data FROM {name}.states ORDER BY 1")
    assert [(r[0], r[1], bytes(r[2])) for r in rows] == [
        ("a000", 2, b'{"balance":0}'),
        ("a001", 2, b'{"balance":100}'),
        ("a002", 0, b'{"balance":2}'),
    ]


async def test_migrate_dsn_refuses_while_nodes_of_another_registry_are_live(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_v1_bank(dsn, name, 3)
    async with eco(dsn, name, BANK_V1, node_id="old-code"):
        result = await pachytype("migrate", "--schema", name, BANK, dsn=dsn)
    assert result.exit_code == 1
    assert "live nodes of schema" in result.output and "old-code" in result.output
    assert "Traceback" not in result.output
    assert await versions(dsn, name) == [(1, 3)]


async def test_migrate_dsn_refuses_a_registry_that_defines_none_of_the_stored_types(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    await make_v1_bank(dsn, name, 3)
    result = await pachytype(
        "migrate", "--schema", name, "examples.usernames.refs:REGISTRY", dsn=dsn
    )
    assert result.exit_code == 1
    assert "defines none of the entity types stored" in result.output
    assert "wrong registry, or wrong --schema?" in result.output
    assert await versions(dsn, name) == [(1, 3)]


async def test_migrate_dsn_beside_a_live_node_loses_and_doubles_nothing(
    schema: tuple[str, str], tmp_path: Path
) -> None:
    """A real node of the new code serves deposits while `migrate` rewrites the
    same states: every acknowledged deposit is applied once, every state ends
    at version 2 (a row a node committed meanwhile is left to the node)."""
    dsn, name = schema
    accounts = 1000
    await make_v1_bank(dsn, name, accounts)  # a{i} holds i units = 100 * i cents
    node = spawn_node(
        dsn, name, BANK, node_id="new-code", lease=2.0, partitions=8, log_dir=tmp_path
    )
    acknowledged = [0] * accounts
    stop = asyncio.Event()

    async def depositor() -> None:
        pick = random.Random(7)
        async with eco(dsn, name, node=False) as client:
            while not stop.is_set():
                batch = pick.sample(range(accounts), 20)
                await client.send(
                    *(bank.account(AccountId(f"a{j:03}")).deposit(amount=1) for j in batch)
                )
                for j in batch:
                    acknowledged[j] += 1
                await asyncio.sleep(0.002)

    sending = asyncio.create_task(depositor())
    try:
        # Start once the node is upgrading states itself (on load, as it commits).
        while (await versions(dsn, name))[-1] < (2, 50):
            await asyncio.sleep(0.02)
        result = await pachytype("migrate", "--schema", name, BANK, "--batch", "7", dsn=dsn)
        stop.set()
        await sending
        assert result.exit_code == 0, result.output
        async with eco(dsn, name, node=False) as client:
            await client.settle()
            balances = [
                (await client.state(bank.account(AccountId(f"a{i:03}")))).balance
                for i in range(accounts)
            ]
    finally:
        stop.set()
        stop_processes([node])
    upgraded = int(result.output.split("upgraded ")[1].split()[0])
    assert 0 < upgraded < accounts  # the node had upgraded some rows itself
    expected = [100 * i + acknowledged[i] for i in range(accounts)]
    wrong = [(i, b - e) for i, (b, e) in enumerate(zip(balances, expected, strict=True)) if b != e]
    assert wrong == []  # (account, applied - acknowledged): none lost, none doubled
    assert await versions(dsn, name) == [(2, accounts)]


# -- mistakes -----------------------------------------------------------------------


def one_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


@pytest.mark.parametrize("command", [["inspect"], ["migrate"], ["node", BANK]])
def test_no_dsn_is_one_line_that_names_pachytype_dsn(command: list[str]) -> None:
    result = CliRunner().invoke(main, command, env={"PACHYTYPE_DSN": None})
    assert result.exit_code == 2
    assert "PACHYTYPE_DSN" in one_line(result)


@pytest.mark.parametrize("command", [["inspect"], ["migrate"], ["node", BANK]])
def test_a_bad_schema_name_is_one_line(command: list[str]) -> None:
    result = run(*command, "--schema", "Bank-Prod", dsn="postgresql://app:pw-secret@db/prod")
    assert result.exit_code == 2
    line = one_line(result)
    assert "'Bank-Prod' is not a plain lower-case identifier" in line
    assert "pw-secret" not in line


def test_a_negative_recent_every_is_one_line() -> None:
    result = run("node", BANK, "--recent-every", "-1", dsn="postgresql://app@127.0.0.1:1/db")
    assert result.exit_code == 2
    assert "--recent-every: -1 seconds; give 0 or more" in one_line(result)


@pytest.mark.parametrize("command", [["inspect"], ["migrate"], ["node", BANK]])
def test_an_unreachable_server_is_one_line_without_the_password(command: list[str]) -> None:
    result = run(*command, dsn="postgresql://app:pw-secret@127.0.0.1:1/prod")
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith(
        "Error: cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/prod"
    )
    assert "PACHYTYPE_DSN" in line and "pw-secret" not in line


@pytest.mark.parametrize("command", [["inspect"], ["migrate"], ["node"]])
def test_a_wrong_registry_is_one_line(command: list[str]) -> None:
    result = run(*command, "examples.bank.account:AccountId", dsn="postgresql://app@127.0.0.1:1/db")
    assert result.exit_code == 2
    assert "'examples.bank.account:AccountId' is not a pachytype Registry" in one_line(result)


def test_inspect_dsn_names_a_schema_without_tables(schema: tuple[str, str]) -> None:
    dsn, name = schema
    result = run("inspect", "--schema", name, dsn=dsn)
    assert result.exit_code == 1
    assert f"schema {name!r} at" in one_line(result) and "check --schema" in result.output


def test_a_dsn_on_the_command_line_is_warned_about(schema: tuple[str, str]) -> None:
    dsn, name = schema
    with_password = dsn.replace("postgres@", "postgres:pw-secret@", 1)
    result = CliRunner().invoke(main, ["migrate", "--dsn", with_password, "--schema", name])
    assert result.exit_code == 0, result.output
    assert "visible to every user of this machine (ps); set PACHYTYPE_DSN" in result.output
    assert "pw-secret" not in result.output


def test_db_and_dsn_together_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["inspect", "--db", str(tmp_path / "x.db"), "--dsn", "postgresql://u@h/d", BANK]
    )
    assert result.exit_code == 2 and "not both" in one_line(result)


async def test_db_wins_over_a_dsn_in_the_environment(tmp_path: Path) -> None:
    result = await pachytype(
        "inspect", "--db", str(tmp_path / "nope.db"), BANK, dsn="postgresql://u@h/d"
    )
    assert "as a LocalDisk database" in result.output


def test_migrate_dsn_creates_missing_tables_and_says_so(schema: tuple[str, str]) -> None:
    dsn, name = schema
    result = run("migrate", "--schema", name, dsn=dsn)
    assert result.exit_code == 0, result.output
    assert f"schema {name!r} did not exist" in result.output
    assert f"schema {name!r}: tables at version 0, now" in result.output
    assert "give MODULE:REGISTRY to upgrade them" in result.output
    shown = run("inspect", "--schema", name, "--json", dsn=dsn)
    assert json.loads(shown.output)["version"] >= 1


async def test_inspect_dsn_shows_events_and_the_state_they_rebuild(
    schema: tuple[str, str],
) -> None:
    dsn, name = schema
    target = "tests.events_pkg.refs:REGISTRY"
    async with eco(dsn, name, events.REGISTRY) as node:
        for item in "abcd":
            await node.call(events.cart(CartId("i")).add(item=item))
        await node.call(events.tally("t").count(n=2))
        await node.call(events.tally("t").count(n=5))
    result = await pachytype("inspect", "--schema", name, target, "--json", dsn=dsn)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    shown = {(e["entity_type"], e["id"]): e for e in data["entities"]}
    assert shown["cart", "i"]["state"] == repr(CartState(dict.fromkeys("abcd", 1)))
    assert shown["cart", "i"]["problem"] is None
    assert shown["tally", "t"]["state"] == 7
    assert data["entities_total"] == 2 and data["events_total"] == 6
    assert [
        (e["entity_type"], e["position"], e["id"], e["seq"], e["event"]) for e in data["events"]
    ] == [
        *(("cart", n, "i", n, repr(Added(item, 1))) for n, item in enumerate("abcd", 1)),
        ("tally", 1, "t", 1, repr(Counted(2))),
        ("tally", 2, "t", 2, repr(Counted(5))),
    ]
    table = await pachytype("inspect", "--schema", name, target, dsn=dsn)
    assert table.exit_code == 0, table.output
    assert "events (latest 6 of 6, in log order, per entity type)" in table.output
    assert "Added(item='d', qty=1)" in table.output
    raw = json.loads((await pachytype("inspect", "--schema", name, "--json", dsn=dsn)).output)
    (cart_row,) = [e for e in raw["entities"] if e["entity_type"] == "cart"]
    assert cart_row["state"] == "(event-sourced: snapshot at event 3, 1 event(s) after it)"
    assert raw["events"][0]["event"] == '["Added",{"item":"a","qty":1},2]'  # and its version
