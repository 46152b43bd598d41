"""`pachytype lock` and `pachytype check` on a small package written per test:
each failure, with its exact `file:line: message`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from codegen.generate import generate, write
from pachytype._cli.check import check
from pachytype._cli.lock import lock

CART = '''\
"""A shopping cart."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Entity


@frozen
class AddItem:
    """Put an item in the cart."""

    name: str


@frozen
class Clear:
    """Empty the cart."""


@frozen
class CartState:
    """What is in the cart."""

    items: tuple[str, ...] = ()


class Cart(Entity[str, AddItem | Clear, CartState]):
    """One cart."""

    def init(self, id: str) -> CartState:
        return CartState()

    def activate(self, msg: AddItem | Clear, state: CartState) -> Activation[CartState]:
        match msg:
            case AddItem(name=name):
                return [], CartState((*state.items, name))
            case Clear():
                return [], CartState()
'''

Edit = Callable[[str, str], None]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The package `shop` with its refs.py and pachytype.lock, all up to date."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text('"""A shop."""\n')
    (package / "cart.py").write_text(CART)
    write(generate(package))
    assert run(lock, package).exit_code == 0
    return package


def run(command: object, package: Path, *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(command, [str(package), *args])  # type: ignore[arg-type]


def edit(package: Path, old: str, new: str, *, regenerate: bool = True) -> None:
    path = package / "cart.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))
    if regenerate:
        write(generate(package))


def line_of(package: Path, text: str) -> int:
    lines = (package / "cart.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def static_check(package: Path) -> list[str]:
    result = run(check, package, "--no-mypy")
    lines = result.output.splitlines()
    assert result.exit_code == (1 if lines[:-1] else 0), result.output
    return lines[:-1]  # the last line is the summary


def test_a_fresh_package_passes(shop: Path) -> None:
    result = run(check, shop, "--no-mypy")
    assert result.exit_code == 0
    assert result.output == f"pachytype check {shop}: ok\n"


def test_lock_file_is_stable_text(shop: Path) -> None:
    text = (shop / "pachytype.lock").read_text()
    lines = text.splitlines()
    assert lines[3:7] == ["format 2", "package shop", "", "entity cart shop.cart.Cart"]
    assert lines[7].startswith("  id ") and lines[7].endswith(" str")
    assert lines[8].startswith("  messages ")
    assert lines[9:11] == ["  message shop.cart.AddItem", "  message shop.cart.Clear"]
    assert lines[11].startswith("  state 1 ") and lines[11].endswith(" shop.cart.CartState")
    assert lines[12:] == [
        "",
        "class shop.cart.AddItem attrs",
        "  field name: str",
        "",
        "class shop.cart.CartState attrs",
        "  field items: tuple[str, ...] = ...",
        "",
        "class shop.cart.Clear attrs",
    ]
    assert run(lock, shop).output == f"unchanged {shop / 'pachytype.lock'}\n"


def test_a_format_1_lock_is_read_and_asks_to_be_rewritten(shop: Path) -> None:
    path = shop / "pachytype.lock"
    text = path.read_text()
    # What format 1 held: fingerprints without defaults and enum members, no shapes.
    from codegen.generate import scan_package
    from codegen.lock import current

    old = current(scan_package(shop), 1).entities["cart"]
    path.write_text(
        "format 1\npackage shop\n\nentity cart shop.cart.Cart\n"
        f"  messages {old.messages}\n  state 1 {old.states[1]}\n"
    )
    assert static_check(shop) == [
        f"{path}:1: pachytype.lock is format 1 (fingerprints only): run `pachytype lock shop` "
        "to record the shapes too, so that later changes can be told compatible or not"
    ]
    assert run(lock, shop).exit_code == 0
    assert path.read_text() == text


def test_a_state_field_with_a_default_needs_no_version_bump(shop: Path) -> None:
    edit(
        shop,
        "    items: tuple[str, ...] = ()\n",
        "    items: tuple[str, ...] = ()\n    total: int = 0\n",
    )
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: the state of version "
        "1 changed compatibly (field `CartState.total` added with a default: data stored "
        "without it gets the default): state already stored decodes with the new code, so "
        "state_version stays 1 and needs no upgrader; run `pachytype lock shop` to record it"
    ]
    assert run(lock, shop).exit_code == 0
    assert static_check(shop) == []


def test_state_shape_changed_without_a_version_bump(shop: Path) -> None:
    edit(
        shop,
        "    items: tuple[str, ...] = ()\n",
        "    items: tuple[str, ...] = ()\n    total: int = field(kw_only=True)\n",
    )
    edit(shop, "from attrs import frozen\n", "from attrs import field, frozen\n")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: the state type "
        "changed shape but state_version is still 1 (field `CartState.total` added without a "
        "default: data stored without it would not decode; give it a default): state stored "
        "at version 1 would not decode; bump state_version to 2 and add "
        "@upgrade(from_version=1) converting the old shape, then run `pachytype lock shop`"
    ]


def test_pachytype_lock_refuses_a_changed_locked_shape_unless_forced(shop: Path) -> None:
    edit(shop, "    items: tuple[str, ...] = ()\n", "    items: list[str] = []\n")
    result = run(lock, shop)
    assert result.exit_code == 1
    assert "changed shape but state_version is still 1" in result.output
    assert result.output.splitlines()[-1] == (
        f"{shop / 'pachytype.lock'} not written: fix the problems above (or pass --force if "
        "no data of those versions was ever stored)"
    )
    assert run(lock, shop, "--force").exit_code == 0
    assert static_check(shop) == []


def test_version_bump_without_an_upgrade_chain(shop: Path) -> None:
    edit(shop, '    """One cart."""\n', '    """One cart."""\n\n    state_version = 3\n')
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: state_version is 3 "
        "but no @upgrade chain reaches it from version 1 (missing @upgrade(from_version=1), "
        "@upgrade(from_version=2)): add them to Cart"
    ]


def test_version_bump_with_its_upgrade_is_locked_with_its_history(shop: Path) -> None:
    edit(
        shop,
        '    """One cart."""\n',
        '    """One cart."""\n\n    state_version = 2\n\n'
        "    @upgrade(from_version=1)\n"
        "    def _total(raw: dict[str, Any]) -> dict[str, Any]:\n"
        '        return {**raw, "total": 0}\n',
    )
    edit(
        shop,
        "from pachytype import Activation, Entity\n",
        "from pachytype import Activation, Entity, upgrade\n",
    )
    edit(shop, "from attrs import frozen\n", "from typing import Any\n\nfrom attrs import frozen\n")
    edit(
        shop,
        "    items: tuple[str, ...] = ()\n",
        "    items: tuple[str, ...] = ()\n    total: int = 0\n",
    )
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: state_version 2 is "
        "not locked yet: run `pachytype lock shop`"
    ]
    assert run(lock, shop).exit_code == 0
    states = [
        line.split()[1]
        for line in (shop / "pachytype.lock").read_text().splitlines()
        if line.startswith("  state ")
    ]
    assert states == ["1", "2"]
    assert static_check(shop) == []


def test_a_changed_id_type_is_refused(shop: Path) -> None:
    edit(shop, "Entity[str, AddItem | Clear, CartState]", "Entity[int, AddItem | Clear, CartState]")
    edit(shop, "def init(self, id: str)", "def init(self, id: int)")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: the id type changed "
        "(str -> int): entities, their state and their mail are stored under the id's text, "
        "so the ones already stored would no longer be found; keep the id type (add a new "
        "entity type for the new ids), or move the stored data yourself and run "
        "`pachytype lock shop --force`"
    ]
    assert run(lock, shop).exit_code == 1
    assert run(lock, shop, "--force").exit_code == 0
    assert static_check(shop) == []


def test_version_going_down(shop: Path) -> None:
    edit(shop, '    """One cart."""\n', '    """One cart."""\n\n    state_version = 0\n')
    problems = static_check(shop)
    assert problems == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: state_version went "
        "down to 0 but pachytype.lock has version 1: state stored at version 1 could not be "
        "read; set state_version = 1 or higher"
    ]


def test_a_message_field_with_a_default_is_recorded_without_ceremony(shop: Path) -> None:
    edit(shop, "    name: str\n", "    name: str\n    quantity: int = 1\n")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: its messages changed "
        "compatibly (field `AddItem.quantity` added with a default: data stored without it "
        "gets the default): mail already waiting in mailboxes decodes with the new code; run "
        "`pachytype lock shop` to record it"
    ]
    assert run(lock, shop).exit_code == 0
    assert static_check(shop) == []


def test_a_new_message_class_is_recorded_without_ceremony(shop: Path) -> None:
    edit(
        shop,
        "@frozen\nclass CartState:",
        '@frozen\nclass Pay:\n    """Pay."""\n\n\n@frozen\nclass CartState:',
    )
    edit(shop, "AddItem | Clear", "AddItem | Clear | Pay")
    edit(shop, "            case Clear():\n", "            case Clear() | Pay():\n")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: its messages changed "
        "compatibly (new message class `Pay`: mail already waiting holds none of it): mail "
        "already waiting in mailboxes decodes with the new code; run `pachytype lock shop` to "
        "record it"
    ]
    assert run(lock, shop).exit_code == 0
    assert static_check(shop) == []


def test_a_removed_message_class_says_how_to_drain_its_mail(shop: Path) -> None:
    edit(shop, "AddItem | Clear", "AddItem")
    edit(shop, "            case Clear():\n                return [], CartState()\n", "")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'class Cart(')}: entity Cart: its messages changed "
        "incompatibly (message class `Clear` removed): mail of `Clear` may still wait in "
        "mailboxes (delayed mail too) and would become dead letters; drain it first: deploy "
        "with it still in Cart's message union, handled as a no-op, and stop sending it; when "
        "`pachytype inspect` shows none of that mail waiting, remove it and run "
        "`pachytype lock shop --force`"
    ]
    assert run(lock, shop).exit_code == 1
    assert run(lock, shop, "--force").exit_code == 0
    assert static_check(shop) == []


def test_missing_lock(shop: Path) -> None:
    (shop / "pachytype.lock").unlink()
    assert static_check(shop) == [
        f"{shop / 'pachytype.lock'}:1: no pachytype.lock: run `pachytype lock shop` and commit it"
    ]


def test_damaged_lock(shop: Path) -> None:
    path = shop / "pachytype.lock"
    path.write_text(path.read_text() + "stat 3 abc\n")
    assert static_check(shop) == [
        f"{path}:{len(path.read_text().splitlines())}: cannot read 'stat 3 abc'; this file is "
        "written by `pachytype lock`: restore it from version control or run `pachytype lock` "
        "again"
    ]


def test_stale_refs(shop: Path) -> None:
    edit(shop, "    name: str\n", "    name: str\n    quantity: int = 1\n", regenerate=False)
    stale = f"{shop / 'refs.py'}:1: refs.py is stale: run pachytype generate {shop}"
    assert stale in static_check(shop)


IMPURE = (
    "Cart.activate is not pure: it {what}; an entity's only effects are the envelopes it "
    "returns and its new state (add `# pachytype: allow-impure` to the line if you mean it)"
)


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ('print("adding", name)', "uses I/O (`builtins.print`)"),
        ("self.last = name", "mutates `self`"),
        ("global SEEN", "declares `global`: module state is not the entity's state"),
        ("SEEN.append(name)", "mutates module state `SEEN` (`.append(...)`)"),
        ("random.random()", "uses randomness (`random.random`)"),
        ("now()", "uses the clock (`time.time`)"),
        ('open("cart.log", "a")', "uses file I/O (`builtins.open`)"),
        ("state.items.sort()", "mutates its argument `state` in place (`.sort(...)`)"),
    ],
)
def test_impure_activate(shop: Path, code: str, what: str) -> None:
    edit(
        shop,
        "from attrs import frozen\n",
        "import random\nfrom time import time as now\n\nfrom attrs import frozen\n",
    )
    edit(shop, "@frozen\nclass AddItem:", "SEEN: list[str] = []\n\n\n@frozen\nclass AddItem:")
    edit(
        shop,
        "            case AddItem(name=name):\n",
        f"            case AddItem(name=name):\n                {code}\n",
    )
    line = line_of(shop, f"                {code}")
    assert static_check(shop) == [f"{shop / 'cart.py'}:{line}: " + IMPURE.format(what=what)]


def test_awaiting_and_ecosystem_calls(shop: Path) -> None:
    edit(
        shop,
        "    def init(self, id: str) -> CartState:\n        return CartState()\n",
        "    def init(self, id: str) -> CartState:\n"
        "        ECO.send(1)\n"
        "        return CartState()\n",
    )
    edit(shop, "@frozen\nclass AddItem:", "ECO: object = None\n\n\n@frozen\nclass AddItem:")
    line = line_of(shop, "ECO.send(1)")
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line}: Cart.init is not pure: it calls the ecosystem "
        "(`.send(...)`): return envelopes instead; an entity's only effects are the envelopes "
        "it returns and its new state (add `# pachytype: allow-impure` to the line if you mean it)"
    ]


def test_the_allow_comment_allows_one_line(shop: Path) -> None:
    edit(
        shop,
        "            case AddItem(name=name):\n",
        "            case AddItem(name=name):\n"
        "                print(name)  # pachytype: allow-impure\n",
    )
    assert static_check(shop) == []


def test_private_construction(shop: Path) -> None:
    edit(
        shop,
        "from pachytype import Activation, Entity\n",
        "from pachytype import Activation, Entity\nfrom pachytype._address import make_envelope\n",
    )
    edit(
        shop,
        "                return [], CartState()\n",
        "                return [make_envelope(Cart.address('x'), Clear())], CartState()\n",
    )
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{line_of(shop, 'pachytype._address')}: imports from "
        "`pachytype._address`, a private name of pachytype: envelopes and addresses come only "
        "from the generated refs (`refs.account(id).deposit(...)`) or `Entity.address(id)`"
    ]


def test_mypy_runs_unless_told_not_to(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYPY_CACHE_DIR", str(tmp_path / "mypy_cache"))  # tmp paths differ
    edit(
        shop,
        "                return [], CartState()\n",
        "                return [Cart.address('x').post(CartState())], CartState()\n",
    )
    assert static_check(shop) == []
    result = run(check, shop)
    assert result.exit_code == 1
    line = line_of(shop, "post(CartState())")
    assert (
        f'{shop / "cart.py"}:{line}: error: Argument 1 to "post" of "Ref" has incompatible '
        'type "CartState"; expected "AddItem | Clear"'
    ) in result.output


def test_async_activate_and_await(shop: Path) -> None:
    edit(
        shop,
        "    def activate(self, msg: AddItem | Clear, state: CartState)",
        "    async def activate(self, msg: AddItem | Clear, state: CartState)",
    )
    edit(shop, "        match msg:\n", "        await LATER\n        match msg:\n")
    edit(shop, "@frozen\nclass AddItem:", "LATER: object = None\n\n\n@frozen\nclass AddItem:")
    cart = shop / "cart.py"
    assert static_check(shop) == [
        f"{cart}:{line_of(shop, 'async def activate')}: "
        + IMPURE.format(what="`activate` is `async def`; make it a plain `def`"),
        f"{cart}:{line_of(shop, 'await LATER')}: "
        + IMPURE.format(what="awaits; activation is synchronous: return envelopes instead"),
    ]


def test_a_locked_entity_that_disappeared(shop: Path) -> None:
    edit(shop, "class Cart(Entity", "class Basket(Entity")
    lock_file = shop / "pachytype.lock"
    entity_line = line_of(shop, "class Basket(")
    locked_line = lock_file.read_text().splitlines().index("entity cart shop.cart.Cart") + 1
    assert static_check(shop) == [
        f"{shop / 'cart.py'}:{entity_line}: entity Basket: not in pachytype.lock yet: run "
        "`pachytype lock shop` and commit it",
        f"{lock_file}:{locked_line}: entity `cart` (shop.cart.Cart) is locked but no longer in "
        "the package: its stored state and mail can no longer be read; if it is gone on "
        "purpose, run `pachytype lock shop`",
    ]


# -- purity follows calls into the package's own helpers -------------------------

UTIL = '''\
"""Helpers of the shop."""

from __future__ import annotations

{imports}


def fetch(name: str) -> str:
    """Look the item up."""
    {code}
    return name
'''


def add_helpers(shop: Path, imports: str, code: str) -> None:
    """shop/util.py with `fetch` doing `code`; AddItem's case calls `price` in cart.py,
    which calls `util.fetch`: activate -> price -> fetch."""
    (shop / "util.py").write_text(UTIL.format(imports=imports, code=code))
    edit(
        shop,
        "from pachytype import Activation, Entity\n",
        "from pachytype import Activation, Entity\n\nfrom .util import fetch\n",
    )
    edit(
        shop,
        "@frozen\nclass AddItem:",
        'def price(name: str) -> str:\n    """The price of an item."""\n'
        "    return fetch(name)\n\n\n@frozen\nclass AddItem:",
    )
    edit(
        shop,
        "            case AddItem(name=name):\n",
        "            case AddItem(name=name):\n                name = price(name)\n",
    )


@pytest.mark.parametrize(
    ("imports", "code", "what"),
    [
        (
            "import urllib.request",
            'urllib.request.urlopen("http://x")',
            "uses network I/O (`urllib.request.urlopen`)",
        ),
        (
            "from http.client import HTTPConnection",
            'HTTPConnection("x")',
            "uses network I/O (`http.client.HTTPConnection`)",
        ),
        ("import requests", 'requests.get("http://x")', "uses network I/O (`requests.get`)"),
        ("import httpx", 'httpx.get("http://x")', "uses network I/O (`httpx.get`)"),
        ("import aiohttp", "aiohttp.ClientSession()", "uses network I/O (`aiohttp.ClientSession`)"),
        (
            "import socket",
            'socket.create_connection(("x", 1))',
            "uses network I/O (`socket.create_connection`)",
        ),
        ("import subprocess", 'subprocess.run(["ls"])', "uses a process (`subprocess.run`)"),
        ("import logging", 'logging.info("x")', "uses logging I/O (`logging.info`)"),
        ("import asyncio", "asyncio.get_event_loop()", "uses asyncio (`asyncio.get_event_loop`)"),
        ("", 'open("prices.txt").read()', "uses file I/O (`builtins.open`)"),
    ],
)
def test_purity_follows_calls_into_imported_helpers(
    shop: Path, imports: str, code: str, what: str
) -> None:
    add_helpers(shop, imports, code)
    util = shop / "util.py"
    line = next(i for i, text in enumerate(util.read_text().splitlines(), 1) if code in text)
    cart = shop / "cart.py"
    assert static_check(shop) == [
        f"{util}:{line}: Cart.activate is not pure: it calls `shop.cart.price` "
        f"({cart}:{line_of(shop, 'name = price(name)')}), which calls `shop.util.fetch` "
        f"({cart}:{line_of(shop, 'return fetch(name)')}), which {what}; an entity's only "
        "effects are the envelopes it returns and its new state (add `# pachytype: "
        "allow-impure` to the line if you mean it)"
    ]


def test_each_finding_is_reported_once(shop: Path) -> None:
    add_helpers(shop, "", 'print("fetching")')
    edit(
        shop,
        "        return CartState()\n\n    def activate",
        "        price(str(id))\n        return CartState()\n\n    def activate",
    )
    edit(
        shop, "                name = price(name)\n", "                name = price(price(name))\n"
    )
    problems = static_check(shop)
    assert len(problems) == 1
    assert "Cart.activate is not pure: it calls `shop.cart.price`" in problems[0]


def test_an_allow_comment_on_the_call_vouches_for_the_helper(shop: Path) -> None:
    add_helpers(shop, "", 'print("fetching")')
    edit(shop, "    return fetch(name)\n", "    return fetch(name)  # pachytype: allow-impure\n")
    assert static_check(shop) == []


def test_a_method_helper_and_a_module_logger(shop: Path) -> None:
    edit(shop, "from attrs import frozen\n", "import logging\n\nfrom attrs import frozen\n")
    edit(
        shop,
        "@frozen\nclass AddItem:",
        "log = logging.getLogger(__name__)\n\n\n@frozen\nclass AddItem:",
    )
    edit(
        shop,
        "    def init(self, id: str) -> CartState:\n",
        '    def _note(self, name: str) -> None:\n        log.info("added %s", name)\n\n'
        "    def init(self, id: str) -> CartState:\n",
    )
    edit(
        shop,
        "            case AddItem(name=name):\n",
        "            case AddItem(name=name):\n                self._note(name)\n",
    )
    cart = shop / "cart.py"
    assert static_check(shop) == [
        f"{cart}:{line_of(shop, 'log.info(')}: Cart.activate is not pure: it calls "
        f"`shop.cart.Cart._note` ({cart}:{line_of(shop, 'self._note(name)')}), which uses "
        "logging I/O (`log.info`, made by `logging.getLogger`); an entity's only effects are "
        "the envelopes it returns and its new state (add `# pachytype: allow-impure` to the "
        "line if you mean it)"
    ]


def test_pure_helpers_pass(shop: Path) -> None:
    add_helpers(shop, "", "name = name.strip()")
    assert static_check(shop) == []


# -- exhaustiveness: a match over the messages ends in assert_never ---------------

FALLBACK = "            case _:\n                return [], state\n"


def test_a_match_that_lets_a_message_fall_through_is_warned_about(shop: Path) -> None:
    edit(
        shop,
        "            case Clear():\n                return [], CartState()\n",
        FALLBACK,
    )
    result = run(check, shop, "--no-mypy")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{shop / 'cart.py'}:{line_of(shop, 'match msg:')}: warning: Cart.activate: this match "
        "over its messages does not name `Clear` in a case of its own and does not end in "
        "`assert_never`: a message class added later falls through silently; name every "
        "class and end with `case _: assert_never(msg)` (`from typing import assert_never`), "
        "so a missing case names itself",
        f"pachytype check {shop}: ok (1 warning)",
    ]


def test_a_guarded_case_does_not_count_as_naming_its_class(shop: Path) -> None:
    edit(shop, "            case Clear():\n", "            case Clear() if state.items:\n")
    edit(
        shop,
        "                return [], CartState()\n",
        "                return [], CartState()\n" + FALLBACK,
    )
    output = run(check, shop, "--no-mypy").output
    assert "warning: Cart.activate: this match over its messages does not name `Clear`" in output


@pytest.mark.parametrize(
    "ending",
    [
        "            case _:\n                assert_never(msg)\n",  # names itself under mypy
        "",  # every class named: exhaustive as it is
    ],
)
def test_a_match_that_names_every_class_or_ends_in_assert_never_passes(
    shop: Path, ending: str
) -> None:
    edit(
        shop,
        "from attrs import frozen\n",
        "from typing import assert_never\n\nfrom attrs import frozen\n",
    )
    edit(
        shop,
        "                return [], CartState()\n",
        "                return [], CartState()\n" + ending,
    )
    assert static_check(shop) == []


def test_a_match_with_several_classes_per_case_counts_them_all(shop: Path) -> None:
    edit(
        shop,
        "            case AddItem(name=name):\n",
        "            case AddItem(name=name) as m:\n",
    )
    edit(shop, "            case Clear():\n", "            case Clear() | Clear():\n")
    assert static_check(shop) == []
