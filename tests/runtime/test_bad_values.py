"""Bad values are refused at `send` (or fail the activation that made them),
never in the store, on every ecosystem: ids no store can keep as a key (a
lone surrogate, NUL, over `MAX_ID_BYTES`), messages with a lone surrogate or
over `MAX_MESSAGE_BYTES`, states over `MAX_STATE_BYTES` or with a lone
surrogate. The error names the entity and the id and says what to do; an
unrelated call made at the same time is answered, and the ecosystem goes on
working."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from attrs import frozen

from pachytype import (
    Activation,
    ActivationError,
    EncodeError,
    Entity,
    EntityType,
    InMemory,
    LocalDisk,
    Postgres,
    Registry,
)
from pachytype._codec import MAX_ID_BYTES, MAX_MESSAGE_BYTES, MAX_STATE_BYTES
from pachytype._ecosystem import Ecosystem
from pachytype._errors import ValueTooLargeError
from pachytype._postgres.testing import drop_schemas, new_schema_name, require_postgres


@frozen
class Note:
    """Make `text` the state."""

    text: str


@frozen
class Grow:
    """Make the state `n` characters long."""

    n: int


@frozen
class Shout:
    """Raise an error whose text holds a lone surrogate (from undecodable
    bytes), or NUL (`nul`)."""

    nul: bool = False


@frozen
class Forward:
    """Send `Note("hi")` to the keeper whose id is the character `code`."""

    code: int


KeeperMsg = Note | Grow | Shout | Forward

UNDECODED = b"\xff".decode(errors="surrogateescape")
"""A byte that did not decode, kept as a lone surrogate ('\udcff')."""


class Keeper(Entity[str, KeeperMsg, str]):
    def init(self, id: str) -> str:
        return ""

    def activate(self, msg: KeeperMsg, state: str) -> Activation[str]:
        match msg:
            case Note(text=text):
                return [], text
            case Grow(n=n):
                return [], "x" * n
            case Shout(nul=nul):
                raise ValueError("bad byte " + ("\x00" if nul else UNDECODED))
            case Forward(code=code):
                return [Keeper.address(chr(code)).post(Note("hi"))], state + "f"


KEEPERS = Registry(
    "tests.bad_values",
    lambda: [
        EntityType(entity=Keeper, messages=(Note, Grow, Shout, Forward), state=str, id_type=str)
    ],
    fingerprint="",
)

KINDS = ["inmemory", "localdisk", "postgres"]
"""InMemory runs the codec too (it round-trips messages and states by default)."""


@asynccontextmanager
async def opened(kind: str, tmp_path: Path) -> AsyncIterator[Ecosystem]:
    if kind == "inmemory":
        async with InMemory(KEEPERS) as eco:
            yield eco
    elif kind == "localdisk":
        async with LocalDisk(tmp_path / "eco.db", KEEPERS) as eco:
            yield eco
    else:
        dsn = require_postgres()
        schema = new_schema_name()
        try:
            async with Postgres(
                dsn,
                KEEPERS,
                schema=schema,
                partitions=4,
                lease=timedelta(seconds=2),
                poll_interval=0.1,
            ) as eco:
                yield eco
        finally:
            drop_schemas(dsn, [schema])


BAD_IDS = {
    "lone surrogate": ("\ud800", "its text holds the lone surrogate '\\ud800' at index 0"),
    "NUL": ("a\x00b", "its text holds NUL ('\\x00', at index 1), which PostgreSQL cannot"),
    "too long": (
        "k" * (MAX_ID_BYTES + 1),
        f"it encodes to {MAX_ID_BYTES + 1:,} bytes, over the limit of {MAX_ID_BYTES:,} bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_IDS))
@pytest.mark.parametrize("kind", KINDS)
async def test_an_id_no_store_can_keep_is_refused_at_send_and_nothing_waits(
    kind: str, case: str, tmp_path: Path
) -> None:
    bad_id, problem = BAD_IDS[case]
    async with opened(kind, tmp_path) as eco:
        bad = Keeper.address(bad_id).post(Note("lost?"))
        sent, answered = await asyncio.wait_for(
            asyncio.gather(
                eco.send(bad),
                eco.call(Keeper.address("ok").post(Note("fine"))),
                return_exceptions=True,
            ),
            30,
        )
        assert answered == "fine"
        assert isinstance(sent, EncodeError)
        message = str(sent)
        assert message.startswith(f"cannot encode the id of entity 'keeper' (id {bad_id!r:.200}")
        assert problem in message
        assert sent.entity_type == "keeper" and sent.id == bad_id
        assert isinstance(sent, ValueTooLargeError) == (case == "too long")
        with pytest.raises(EncodeError):
            await asyncio.wait_for(eco.call(bad), 30)
        # the ecosystem goes on, and nothing was stored for the bad id
        assert await eco.call(Keeper.address("ok").post(Note("again"))) == "again"
        await eco.settle()
        assert await eco.dead_letters() == []


BAD_MESSAGES = {
    "lone surrogate": (
        Note(b"caf\xe9".decode(errors="surrogateescape")),
        "a str in it holds a lone surrogate; a lone surrogate is not Unicode text",
    ),
    "too large": (
        Note("m" * MAX_MESSAGE_BYTES),
        f"over the limit of {MAX_MESSAGE_BYTES:,} bytes; send bulky data by reference",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
@pytest.mark.parametrize("kind", KINDS)
async def test_a_message_no_store_can_keep_is_refused_at_send_with_its_whole_send(
    kind: str, case: str, tmp_path: Path
) -> None:
    bad_message, problem = BAD_MESSAGES[case]
    async with opened(kind, tmp_path) as eco:
        target = Keeper.address("a")
        with pytest.raises(EncodeError) as info:
            await asyncio.wait_for(
                eco.send(target.post(Note("first")), target.post(bad_message)), 30
            )
        assert str(info.value).startswith("cannot encode the Note message of entity 'keeper'")
        assert problem in str(info.value)
        await eco.settle()
        assert await eco.state(target) == ""  # all or nothing: "first" was not sent either
        assert await eco.call(target.post(Note("later"))) == "later"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_state_too_large_to_store_fails_its_activation_not_the_store(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as eco:
        big = Keeper.address("big")
        assert await eco.call(big.post(Note("small"))) == "small"
        with pytest.raises(ActivationError) as info:
            await asyncio.wait_for(eco.call(big.post(Grow(MAX_STATE_BYTES))), 60)
        assert f"over the limit of {MAX_STATE_BYTES:,} bytes" in str(info.value)
        assert "entity 'keeper' (id 'big')" in str(info.value)
        assert await eco.state(big) == "small"  # unchanged
        assert await eco.call(Keeper.address("other").post(Note("fine"))) == "fine"
        (dead,) = await eco.dead_letters()
        assert dead.message == Grow(MAX_STATE_BYTES)


@pytest.mark.parametrize("kind", KINDS)
async def test_mail_to_a_bad_id_from_an_activation_becomes_a_dead_letter(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as eco:
        sender = Keeper.address("sender")
        with pytest.raises(ActivationError) as info:
            await asyncio.wait_for(eco.call(sender.post(Forward(0xD800))), 30)
        assert "cannot encode the id of entity 'keeper' (id '\\ud800')" in str(info.value)
        assert await eco.state(sender) == ""
        (dead,) = await eco.dead_letters()
        assert dead.message == Forward(0xD800)
        assert await eco.call(sender.post(Forward(ord("b")))) == "f"


@pytest.mark.parametrize("nul", [False, True], ids=["lone surrogate", "NUL"])
@pytest.mark.parametrize("kind", ["inmemory", "localdisk", "postgres"])
async def test_an_error_whose_text_no_store_can_keep_still_makes_a_dead_letter(
    kind: str, nul: bool, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as eco:
        shouter = Keeper.address("s")
        with pytest.raises(ActivationError):
            await asyncio.wait_for(eco.call(shouter.post(Shout(nul))), 3)
        (dead,) = await eco.dead_letters()
        assert dead.error_type == "ValueError"
        assert dead.error.startswith("bad byte ")
        assert await eco.call(shouter.post(Note("fine"))) == "fine"


@pytest.mark.parametrize("kind", KINDS)
async def test_values_at_the_limits_and_nul_inside_messages_are_kept(
    kind: str, tmp_path: Path
) -> None:
    async with opened(kind, tmp_path) as eco:
        longest = Keeper.address("é" * (MAX_ID_BYTES // 2))  # exactly MAX_ID_BYTES of UTF-8
        text = "nul \x00 in a message or a state is kept (JSON escapes it)"
        assert await eco.call(longest.post(Note(text))) == text
        largest = "m" * (MAX_MESSAGE_BYTES - len('["Note",{"text":""}]'))
        assert await eco.call(longest.post(Note(largest))) == largest
        await eco.settle()
        assert await eco.state(longest) == largest
        assert await eco.dead_letters() == []
