"""The generator's model and output are deterministic, and the model tells the
schema lock what it needs (state versions, upgrades, canonical types)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pachytype._generator import codegen_module

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
generate = codegen_module("generate")
package = codegen_module("package")
scan = codegen_module("scan")
build = codegen_module("build")
render = codegen_module("render")
fingerprint = codegen_module("fingerprint")


def _render_in_order(directory: Path, reverse: bool) -> str:
    source = package.find_package(directory)
    itself = generate.generated_module(source, directory / "refs.py")
    modules = scan.scan_modules(source)
    ordered = dict(sorted(modules.items(), reverse=reverse))
    model = build.build_model(source, ordered, itself)
    return str(render.render(model, generate.first_party_of(source), itself))


def test_output_is_the_same_twice_and_in_any_module_order() -> None:
    for case in ("ping_pong", "aliases", "fields"):
        directory = GOLDEN / case
        assert generate.generate(directory).text == generate.generate(directory).text
        assert _render_in_order(directory, False) == _render_in_order(directory, True)


def test_model_gives_what_the_lock_needs() -> None:
    model = generate.scan_package(GOLDEN / "fields")
    (account,) = model.entities
    assert (account.name, account.state_version, account.upgrades) == ("account", 2, (1,))
    assert account.canonical_state == "tests.golden.fields.state.account.AccountState"
    assert account.canonical_id == "uuid.UUID"
    deposit = next(m for m in account.messages if m.method == "deposit")
    assert [(f.param, f.canonical_type, f.kw_only) for f in deposit.fields] == [
        ("amount", "int", False),
        ("note", "str", False),
        ("entry", "tests.golden.fields.state.account.Entry | None", False),
        ("at", "datetime.datetime | None", True),
    ]
    state = model.classes["tests.golden.fields.state.account.AccountState"]
    assert [(f.name, f.canonical_type) for f in state.fields] == [
        ("balance", "int"),
        ("entries", "tuple[tests.golden.fields.state.account.Entry, ...]"),
        ("color", "tests.golden.fields.state.account.Color"),
        ("tags", "frozenset[str]"),
    ]
    assert not model.classes["tests.golden.fields.state.account.Color"].is_attrs


def test_aliases_and_newtypes_are_expanded_in_canonical_types() -> None:
    model = generate.scan_package(GOLDEN / "ping_pong")
    client, server = model.entities
    assert client.canonical_id == "str"  # ClientId = NewType("ClientId", str)
    hello, ping = server.messages
    assert [f.canonical_type for f in ping.fields] == [
        "int",
        "pachytype.Address[tests.golden.ping_pong.client.Pong]",
    ]
    assert [f.canonical_type for f in hello.fields] == ["tests.golden.ping_pong.refs.ClientRef"]
    aliases = generate.scan_package(GOLDEN / "aliases")
    seen = next(e for e in aliases.entities if e.name == "seen")
    assert seen.canonical_state == "int | None"  # Optional[int]


def _copy(case: str, root: Path) -> Path:
    target = root / case
    shutil.copytree(GOLDEN / case, target, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "__init__.py").write_text("")
    return target


def test_fingerprint_follows_the_schema_not_the_spelling(tmp_path: Path) -> None:
    directory = _copy("aliases", tmp_path / "one")
    before = fingerprint.fingerprint(generate.scan_package(directory))

    entities = directory / "entities.py"
    original = entities.read_text()
    entities.write_text(original.replace("VerticalMsg", "UpDownMsg"))
    assert fingerprint.fingerprint(generate.scan_package(directory)) == before

    msgs = directory / "msgs.py"
    msgs.write_text(msgs.read_text().replace("value: int", "value: str"))
    assert fingerprint.fingerprint(generate.scan_package(directory)) != before


def test_fingerprint_changes_with_the_state_version_and_state_fields(tmp_path: Path) -> None:
    directory = _copy("fields", tmp_path / "two")
    before = fingerprint.fingerprint(generate.scan_package(directory))

    account = directory / "account.py"
    account.write_text(account.read_text().replace("state_version = 2", "state_version = 3"))
    bumped = fingerprint.fingerprint(generate.scan_package(directory))
    assert bumped != before

    state = directory / "state" / "account.py"
    state.write_text(state.read_text().replace("    note: str\n", "    memo: str\n"))
    assert fingerprint.fingerprint(generate.scan_package(directory)) not in (before, bumped)


def test_star_imports_from_the_package_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "msgs.py").write_text(
        "from attrs import frozen\n\n\n@frozen\nclass Ring:\n    amount: int = 2\n"
    )
    (root / "till.py").write_text(
        "from pachytype import Entity\n"
        "from .msgs import *\n\n\n"
        "class Till(Entity[str, Ring, int]):\n"
        "    def init(self, id: str) -> int:\n        return 0\n"
    )
    (till,) = generate.scan_package(root).entities
    assert [(m.cls.qualname, m.method) for m in till.messages] == [("shop.msgs.Ring", "ring")]
    assert "    def ring(self, amount: int = 2) -> Envelope[int]:\n" in generate.generate(root).text


def test_a_message_class_and_its_subclass_may_both_be_in_the_union(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "account.py").write_text(
        "from attrs import frozen\n"
        "from pachytype import Entity\n\n\n"
        "@frozen\nclass Deposit:\n    amount: int\n\n\n"
        "@frozen\nclass BigDeposit(Deposit):\n    why: str\n\n\n"
        "class Account(Entity[str, Deposit | BigDeposit, int]):\n"
        "    def init(self, id: str) -> int:\n        return 0\n"
    )
    (account,) = generate.scan_package(root).entities
    assert [(m.method, [f.param for f in m.fields]) for m in account.messages] == [
        ("big_deposit", ["amount", "why"]),
        ("deposit", ["amount"]),
    ]
