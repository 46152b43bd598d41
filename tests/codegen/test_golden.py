"""`pachytype generate` writes exactly the expected module for each golden case,
and generated modules are ruff-clean, format-stable, mypy-strict-clean and work.

Each directory under tests/golden/ is an input package whose `refs.py` is the
expected output. To update the expected outputs after a deliberate change to
the generator, run:

    PACHYTYPE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/codegen/test_golden.py

and review the diff of tests/golden/*/refs.py before committing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pachytype import InMemory
from pachytype._generator import codegen_module

ROOT = Path(__file__).resolve().parent.parent.parent
GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "__init__.py").is_file())
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/refs.py"))
BIN = Path(sys.executable).parent
generate = codegen_module("generate")


@pytest.mark.parametrize("case", CASES)
def test_golden_output(case: str) -> None:
    generated = generate.generate(GOLDEN / case)
    expected = GOLDEN / case / "refs.py"
    if os.environ.get("PACHYTYPE_UPDATE_GOLDEN") == "1":
        expected.write_text(generated.text, encoding="utf-8")
    assert generated.text == expected.read_text(encoding="utf-8"), (
        f"tests/golden/{case}/refs.py differs from what the generator writes; if the "
        f"change is intended, rerun with PACHYTYPE_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_examples_are_fresh(example: str) -> None:
    generated = generate.generate(ROOT / "examples" / example)
    assert generate.is_fresh(generated), f"run `pachytype generate examples/{example}`"


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_generated_modules_are_ruff_clean_and_format_stable() -> None:
    files = [str(GOLDEN / c / "refs.py") for c in CASES] + [str(p / "refs.py") for p in EXAMPLES]
    check = _run(str(BIN / "ruff"), "check", *files)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run(str(BIN / "ruff"), "format", "--check", *files)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_golden_packages_and_examples_are_mypy_strict_clean() -> None:
    # One batched run: the generated modules checked against the code using them.
    paths = [str(GOLDEN), *(str(p) for p in EXAMPLES)]
    result = _run(sys.executable, "-m", "mypy", *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_modules_are_basedpyright_strict_clean() -> None:
    # What Pylance users see: strict mode (pyproject.toml's [tool.basedpyright]).
    generated = sorted(GOLDEN.glob("*/refs.py")) + [p / "refs.py" for p in EXAMPLES]
    others = ["tests/conformance", "tests/simulation", "tests/test_postgres_workload"]
    generated += [ROOT / d / "refs.py" for d in [*others, "benchmarks/workload"]]
    result = _run(str(BIN / "basedpyright"), *(str(p) for p in generated))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("0 errors, 0 warnings, 0 notes")


async def test_entities_in_two_modules_message_each_other() -> None:
    from tests.golden.ping_pong import refs
    from tests.golden.ping_pong.client import ClientId
    from tests.golden.ping_pong.server import ServerId

    async with InMemory(refs.REGISTRY) as eco:
        await eco.send(refs.client(ClientId("c")).start(server=ServerId("s"), me=ClientId("c")))
        await eco.settle()
        assert await eco.state(refs.client(ClientId("c"))) == 1
        assert await eco.state(refs.server(ServerId("s"))) == 1
        await eco.send(refs.server(ServerId("s")).hello(client=refs.client(ClientId("c"))))
        await eco.settle()
        assert await eco.state(refs.client(ClientId("c"))) == 2
        # A ServerRef is an Address[Ping] (contravariance): the narrowed field accepts it.
        await eco.call(refs.client(ClientId("c")).watch(server=refs.server(ServerId("s"))))
        assert await eco.state(refs.client(ClientId("c"))) == 102


@pytest.mark.parametrize("first", ["tests.golden.ping_pong.refs", "tests.golden.ping_pong.server"])
def test_either_import_order_works(first: str) -> None:
    # A fresh interpreter, so the import cycle (entities <-> refs) really runs.
    code = (
        f"import {first}\n"
        "from tests.golden.ping_pong import refs\n"
        "print(sorted(refs.REGISTRY.types))\n"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['client', 'pachytype.inbox', 'server']"


def test_defaults_computed_by_attrs_are_fresh_per_message() -> None:
    from tests.golden.fields import refs
    from tests.golden.fields.messages import Color, Tag
    from tests.golden.fields.state.account import Color as AccountColor

    ref = refs.account(uuid.UUID(int=1))
    first, second = ref.tag(paint=Color("red")).message, ref.tag(paint=Color("red")).message
    assert isinstance(first, Tag) and isinstance(second, Tag)
    assert first.names == [] and first.names is not second.names
    assert first.scores == {} and first.scores is not second.scores
    assert (first.label, first.size, first.account_color) == ("x", 0, AccountColor.GREEN)
    chosen = ref.tag(["a", "b"], secret="s", title="t", paint=Color("blue")).message
    assert chosen == Tag(["a", "b"], secret="s", title="t", paint=Color("blue"))
    assert chosen.size == 2
    named = ref.tag(paint=Color("blue"), given="g").message  # a field named `given`
    assert isinstance(named, Tag) and named.given == "g" and named.names == []


def test_registry_lists_entities_messages_state_and_id_types() -> None:
    from tests.golden.aliases import msgs, refs

    types = refs.REGISTRY.types
    # Every registry also has the library's inbox (the reply address of `eco.ask`).
    assert sorted(types) == ["horizontal", "pachytype.inbox", "seen", "stack", "vertical"]
    assert types["horizontal"].messages == (msgs.Left, msgs.Right)
    assert (types["horizontal"].state, types["horizontal"].id_type) == (None, int)
    assert types["seen"].messages == (msgs.Touch,)
    assert types["seen"].state == int | None
    assert types["stack"].state == tuple[int, ...]
    assert types["vertical"].messages == (msgs.Down, msgs.Up)
    assert len(refs.REGISTRY.fingerprint) == 64
