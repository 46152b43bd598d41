"""Without a reachable PostgreSQL the PostgreSQL tests skip, saying why;
under CI=true they fail instead, so a CI job cannot pass by skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NOWHERE = "postgresql://nobody:pw-not-shown@127.0.0.1:1/none"


def _run_a_postgres_test(ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PACHYTYPE_TEST_DSN": NOWHERE, "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/postgres/test_schema.py::test_migrating_again_changes_nothing"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def test_without_a_server_the_tests_skip_with_the_reason() -> None:
    result = _run_a_postgres_test("")
    assert result.returncode == 0, result.stdout
    assert "SKIPPED [1]" in result.stdout
    assert "no PostgreSQL at postgresql://nobody:***@127.0.0.1:1/none" in result.stdout
    assert "set PACHYTYPE_TEST_DSN" in result.stdout
    assert "pw-not-shown" not in result.stdout


def test_under_ci_a_missing_server_fails_the_tests() -> None:
    result = _run_a_postgres_test("true")
    assert result.returncode == 1, result.stdout
    assert "Failed: no PostgreSQL at postgresql://nobody:***@127.0.0.1:1/none" in result.stdout
    assert "CI=true requires it" in result.stdout
