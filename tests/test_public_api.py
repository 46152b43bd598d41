"""The public API (what `pachytype` re-exports): `import pachytype` loads what
every program needs and no more (asyncpg only once a program uses
`pachytype.Postgres`; checked in a fresh interpreter, where nothing else
imported it first), and its exceptions are defined in one module."""

from __future__ import annotations

import json
import subprocess
import sys

import pachytype

PROBE = """
import json, sys
import pachytype
before = sorted(m for m in sys.modules if m == "asyncpg" or m.startswith("asyncpg."))
from pachytype import Postgres
from pachytype.ecosystems._postgres import Postgres as Defined
print(json.dumps({
    "before": before,
    "after": "asyncpg" in sys.modules,
    "same": Postgres is Defined and pachytype.Postgres is Defined,
}))
"""


def test_import_pachytype_does_not_import_asyncpg() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    )
    found = json.loads(result.stdout)
    assert found["before"] == [], f"import pachytype imported {found['before']}"
    assert found["after"], "pachytype.Postgres should load asyncpg when first used"
    assert found["same"], "pachytype.Postgres is not the class ecosystems._postgres defines"


def test_every_public_error_is_defined_in_errors() -> None:
    # The simulation's errors carry its traces and outcomes, so they live with it.
    homes = {
        name: obj.__module__
        for name in pachytype.__all__
        for obj in [getattr(pachytype, name)]
        if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    elsewhere = {
        name: module
        for name, module in homes.items()
        if module not in ("pachytype._errors", "pachytype.simulation._errors")
    }
    assert elsewhere == {}, "public errors belong in pachytype/_errors.py"
    assert homes["PachytypeError"] == "pachytype._errors"
