"""The DSN's password is never shown: not by `repr`, not in an exception, not
in a log line or a traceback, not on the command line of `pachytype node`,
`inspect` or `migrate` (they read `PACHYTYPE_DSN`).

The test server trusts 127.0.0.1 (it never asks for the password), so the
string tests below check redaction where authentication would not catch a
mistake, and the role tests check that a DSN carrying a hostile password is
read as the writer meant: the sessions really log in as that role.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs published
import pytest

from examples.bank import refs as bank
from examples.bank.account import AccountId
from pachytype import Postgres
from pachytype._postgres.dsn import SecretFilter, connect_error, dsn_problem, redact, scrub, secrets
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    postgres_test_dsn,
    require_postgres,
    spawn_node,
    stop_processes,
)
from tests.bank_v1.registry import REGISTRY as BANK_V1

# Every piece between URL delimiters is distinctive, so finding any of them
# in an output means (part of) the password leaked.
HOSTILE = "Hsh1#Sl2/Qm3?At4@Cl5:Pc6%Am7&Qt8'Dq9\" Sp0-é"
ROOT = Path(__file__).resolve().parent.parent.parent


def pieces(password: str) -> list[str]:
    """The password, its percent-encoding, and the pieces a URL parser cuts it into."""
    found = {password, quote(password, safe="")}
    found |= {p for p in re.split(r"[#/?@:&]", password) if len(p) >= 3}
    return sorted(found)


def leaked(text: str, password: str = HOSTILE) -> list[str]:
    return [p for p in pieces(password) if p in text]


PASSWORDS = [
    HOSTILE,
    "only#hash-secret",
    "only/slash-secret",
    "only?question-secret",
    "two@at-signs@secret",
    "colon:colon-secret",
    "percent%25-secret",
    "space and 'quotes' secret",
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_hides_a_hostile_password_in_every_dsn_form(password: str) -> None:
    encoded = quote(password, safe="")
    forms = [
        f"postgresql://app:{password}@db.example:5432/prod",  # as typed (invalid URL)
        f"postgresql://app:{encoded}@db.example:5432/prod",  # as it should be written
        f"postgres://app:{encoded}@db1:5432,db2:5433/prod?sslmode=require",
        f"postgresql://app@db.example/prod?sslmode=require&password={encoded}",
    ]
    for dsn in forms:
        shown = redact(dsn)
        assert leaked(shown, password) == [], (dsn, shown)
        assert "app" in shown and "***" in shown and "prod" in shown
        eco = Postgres(dsn, BANK_V1, schema="bank")
        assert leaked(repr(eco), password) == [] and "***" in repr(eco)
    keyword = "host=db user=app password='{}' dbname=prod".format(
        password.replace("\\", "\\\\").replace("'", "\\'")
    )
    assert leaked(redact(keyword), password) == []
    assert redact(keyword).startswith("host=db user=app password=***")


def test_redact_keeps_everything_but_the_password() -> None:
    assert redact("postgresql://u:pw@h:5432/d?x=1") == "postgresql://u:***@h:5432/d?x=1"
    assert redact("postgresql://u:a%23b@[::1]:5432/d") == "postgresql://u:***@[::1]:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert (
        redact("postgresql:///d?host=/run&password=x1") == "postgresql:///d?host=/run&password=***"
    )
    assert redact("host=h user=u password=pw dbname=d") == "host=h user=u password=*** dbname=d"


def test_scrub_removes_the_secret_from_any_text() -> None:
    dsn = f"postgresql://app:{HOSTILE}@db/prod"
    # What asyncpg says about such a DSN, and a message quoting it whole.
    for text in (
        "bad query field: 'At4@Cl5:Pc6%Am7&Qt8\\'Dq9\" Sp0-é@db/prod'",
        "invalid literal for int() with base 10: 'Hsh1'",
        f"failed: {dsn} is wrong",
        "see postgresql://other:Other-Secret@elsewhere/x too",
    ):
        assert leaked(scrub(text, dsn)) == []
    assert "Other-Secret" not in scrub("postgresql://other:Other-Secret@elsewhere/x", dsn)
    assert set(secrets(dsn)) >= {"Hsh1", HOSTILE}


def test_a_malformed_dsn_is_explained_without_quoting_it() -> None:
    for char in "#/?@":
        dsn = f"postgresql://app:before{char}after-secret@db/prod"
        problem = dsn_problem(dsn)
        assert problem is not None and "percent-encoded" in problem
        assert "before" not in problem and "after-secret" not in problem
        message = connect_error(dsn, ValueError("bad query field: 'after-secret@db/prod'"))
        assert "after-secret" not in message and "urllib.parse.quote" in message
    assert dsn_problem(f"postgresql://app:{quote(HOSTILE, safe='')}@db/prod") is None
    assert dsn_problem("postgresql://app@db/prod?sslrootcert=/etc/a@b") is None
    assert "key=value form" in (dsn_problem("host=db password=x") or "")


def test_log_records_and_their_tracebacks_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    dsn = f"postgresql://app:{quote(HOSTILE, safe='')}@db/prod"
    logger = logging.getLogger("test.secrets")
    caplog.handler.addFilter(SecretFilter(dsn))
    try:
        raise RuntimeError(f"cannot use {dsn} (password {HOSTILE})")
    except RuntimeError:
        logger.exception("connecting to %s failed", dsn)
    assert caplog.text.count("***") >= 3
    assert leaked(caplog.text) == []


def test_records_without_an_exception_pass_the_filter_scrubbed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # asyncio's exception handler logs with exc_info=False when it has no exception.
    dsn = f"postgresql://app:{quote(HOSTILE, safe='')}@db/prod"
    logger = logging.getLogger("test.secrets")
    caplog.handler.addFilter(SecretFilter(dsn))
    logger.error("Task was destroyed but it is pending: %s", dsn, exc_info=False)
    logger.error("no traceback either: %s", dsn, exc_info=None)
    assert caplog.text.count("***") >= 2
    assert leaked(caplog.text) == []


# -- against the server -------------------------------------------------------------


async def test_opening_with_a_malformed_hostile_dsn_names_the_fix_not_the_password() -> None:
    base = urlsplit(require_postgres())
    where = f"{base.hostname}:{base.port or 5432}{base.path}"
    for dsn in (
        f"postgresql://postgres:{HOSTILE}@{where}",
        f"postgresql://postgres:only?question-secret@{where}",  # asyncpg quoted the tail
        f"postgresql://postgres:only#hash-secret@{where}",  # asyncpg quoted the head
    ):
        eco = Postgres(dsn, BANK_V1, schema="secrets")
        with pytest.raises(ConnectionError) as info:
            await eco.open()
        text = str(info.value)
        assert "percent-encoded" in text and "***" in text
        password = dsn.split("postgres:", 2)[-1].rsplit("@", 1)[0]
        assert leaked(text, password) == [], text
        assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_an_unreachable_server_is_named_without_a_hostile_password() -> None:
    eco = Postgres(f"postgresql://app:{quote(HOSTILE, safe='')}@127.0.0.1:1/db", BANK_V1)
    with pytest.raises(ConnectionError) as info:
        await eco.open()
    assert str(info.value).startswith(
        "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:1/db: "
    )
    assert leaked(str(info.value)) == []


async def admin(sql: str, *args: object) -> None:
    conn = await asyncpg.connect(postgres_test_dsn())
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
async def hostile_role() -> AsyncIterator[tuple[str, str, str]]:
    """`(role, its DSN with HOSTILE percent-encoded, a schema name)`; all dropped after."""
    admin_dsn = require_postgres()
    role = f"pt_pw_{uuid.uuid4().hex[:10]}"
    schema = new_schema_name("pt_secret")
    conn = await asyncpg.connect(admin_dsn)
    database = await conn.fetchval("SELECT current_database()")
    create = await conn.fetchval(
        "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)", role, HOSTILE
    )
    await conn.execute(create)
    await conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
    await conn.close()
    base = urlsplit(admin_dsn)
    dsn = (
        f"postgresql://{role}:{quote(HOSTILE, safe='')}@{base.hostname}:{base.port or 5432}"
        f"/{database}"
    )
    try:
        yield role, dsn, schema
    finally:
        drop_schemas(admin_dsn, [schema])
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await conn.execute(f'DROP OWNED BY "{role}"')
            await conn.execute(f'DROP ROLE "{role}"')
        finally:
            await conn.close()


def cli(*args: str, dsn: str | None) -> subprocess.CompletedProcess[str]:
    """Run `pachytype ARGS` as its own process, the DSN in the environment only."""
    env = {k: v for k, v in os.environ.items() if k != "PACHYTYPE_DSN"}
    env["COLUMNS"] = "200"
    if dsn is not None:
        env["PACHYTYPE_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "pachytype", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def wait_for_line(log: Path, text: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in log.read_text():
        assert loop.time() < deadline, f"{text!r} not in {log}: {log.read_text()}"
        await asyncio.sleep(0.02)


async def test_a_role_with_a_hostile_password_runs_nodes_and_operator_tools_unseen(
    hostile_role: tuple[str, str, str], tmp_path: Path
) -> None:
    role, dsn, schema = hostile_role
    node = spawn_node(
        dsn,
        schema,
        "tests.bank_v1.registry:REGISTRY",
        node_id="hostile",
        lease=2.0,
        partitions=8,
        log_dir=tmp_path,
    )
    log = tmp_path / "hostile.log"
    watcher = await asyncpg.connect(postgres_test_dsn())
    try:
        await wait_for_line(log, "joined schema")
        # Not on `ps`: the node's command line has no DSN.
        cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes().decode(errors="replace")
        assert leaked(cmdline) == [] and "postgresql://" not in cmdline
        # The DSN was read as meant: the node's sessions logged in as the role.
        users = await watcher.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name LIKE $1",
            f"pachytype {schema} %hostile",
        )
        assert [r[0] for r in users] == [role]
        # 30 deposits acknowledged by a client with the same DSN are all applied.
        async with Postgres(dsn, BANK_V1, schema=schema, node=False, poll_interval=0.05) as eco:
            assert leaked(repr(eco)) == []
            await eco.send(
                *(bank.account(AccountId(f"a{i % 3}")).deposit(amount=1) for i in range(30))
            )
            await eco.settle()
            balances = [
                (await eco.state(bank.account(AccountId(f"a{i}")))).balance for i in range(3)
            ]
        assert balances == [10, 10, 10]
        # A lost LISTEN connection is logged with the ecosystem's repr: redacted.
        await watcher.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"pachytype {schema} listen hostile",
        )
        await wait_for_line(log, "LISTEN connection lost")
        # The operator tools read PACHYTYPE_DSN; nothing they print holds the password.
        shown = cli("inspect", "--schema", schema, "tests.bank_v1.registry:REGISTRY", dsn=dsn)
        assert shown.returncode == 0, shown.stderr
        assert "AccountState(balance=10)" in shown.stdout and f"{role}:***@" in shown.stdout
        node.send_signal(signal.SIGTERM)
        assert node.wait(15) == 0
        migrated = cli("migrate", "--schema", schema, "examples.bank.refs:REGISTRY", dsn=dsn)
        assert migrated.returncode == 0, migrated.stderr
        assert "upgraded 3 state(s)" in migrated.stdout
        missing = cli("inspect", "--schema", schema, dsn=dsn.rsplit("/", 1)[0] + "/no_such_db")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert 'database "no_such_db" does not exist' in missing.stderr
        outputs = [shown.stdout, shown.stderr, migrated.stdout, migrated.stderr]
        outputs += [missing.stdout, missing.stderr]
    finally:
        stop_processes([node])
        await watcher.close()
    text = log.read_text()
    assert f"{role}:***@" in text and "LISTEN connection lost" in text
    assert leaked(text) == []
    for output in outputs:
        assert leaked(output) == [], output
