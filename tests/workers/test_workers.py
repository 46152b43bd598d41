"""Workers: the pure worker entity (claims, leases, retries, giving up,
exactly-once results), the generator's and the checker's rules for them.
The runner, end to end on every ecosystem and across killed processes, is
exercised by tests/examples/test_payments.py."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codegen.generate import generate, write
from examples.payments import refs
from examples.payments.order import Charged, ChargeFailed, OrderId
from examples.payments.provider import PROVIDER_URL, Provider
from examples.payments.workers import Charge, Payments
from pachytype import Envelope, InMemory, ManualClock, WorkerState
from pachytype._address import Ref, make_ref, unpack
from pachytype._cli.check import check
from pachytype._cli.lock import lock
from pachytype._generator import codegen_module
from pachytype._worker import Assigned, ClaimWork, ReleaseWork, WorkDone, WorkFailed

PAYMENTS = Payments()
problems = codegen_module("problems")


def charge(order: str, cents: int = 100) -> Charge:
    return Charge(OrderId(order), cents, refs.order(OrderId(order)))


def run(state: WorkerState, *messages: object) -> tuple[WorkerState, list[Envelope[Any]]]:
    """Activate the worker entity with each message in turn; every envelope sent."""
    sent: list[Envelope[Any]] = []
    for message in messages:
        out, state = PAYMENTS.activate(message, state)
        for env in out:
            assert isinstance(env, Envelope)  # workers cancel no timer
            if isinstance(env.message, Assigned):
                # The entrance handed the request to a shard: be that shard too.
                more, state = PAYMENTS.activate(env.message, state)
                sent.extend(e for e in more if isinstance(e, Envelope))
            else:
                sent.append(env)
    return state, sent


def granted(state: WorkerState, claim: str) -> list[str]:
    return [p.key for p in state.pending if p.claim == claim]


def replies(sent: Sequence[Envelope[Any]]) -> list[tuple[str, object]]:
    return [(str(unpack(e)[0].id), unpack(e)[1]) for e in sent]


def test_requests_are_kept_under_their_key_and_a_repeat_is_absorbed() -> None:
    state, sent = run(WorkerState(), charge("a"), charge("b"), charge("a"))
    assert [p.key for p in state.pending] == ["charge-a", "charge-b"]
    assert (state.repeated, sent) == (1, [])


def test_a_grant_is_exclusive_and_bounded_by_the_concurrency() -> None:
    orders = [charge(f"o{i}") for i in range(Payments.concurrency + 4)]
    state, _ = run(WorkerState(), *orders)
    state, _ = run(state, ClaimWork("c1", "r1", 10.0, 100), ClaimWork("c2", "r2", 10.0, 100))
    assert len(granted(state, "c1")) == Payments.concurrency
    assert granted(state, "c2") == []  # every slot is held
    state, _ = run(state, ClaimWork("c3", "r3", 10.0, 2))
    assert granted(state, "c3") == []


def test_a_result_is_forwarded_once_and_a_late_duplicate_is_dropped() -> None:
    state, _ = run(WorkerState(), charge("a"), ClaimWork("c1", "r1", 0.0, 1))
    lease = Payments.timeout + Payments.lease_margin
    # r1 goes silent; after its lease r2 is granted the same request, same key.
    state, _ = run(state, ClaimWork("c2", "r2", lease + 0.1, 1))
    assert granted(state, "c2") == ["charge-a"]
    assert state.pending[0].attempts == 2
    reply = refs.order(OrderId("a")).charged(charge="ch_1")
    state, sent = run(state, WorkDone("charge-a", "c2", reply))
    assert replies(sent) == [("a", Charged("ch_1"))]
    state, sent = run(state, WorkDone("charge-a", "c1", reply))  # r1 was only slow
    assert sent == []
    assert (state.pending, state.completed, state.duplicates) == ((), 1, 1)


def test_a_failure_backs_off_and_a_stale_one_is_ignored() -> None:
    state, _ = run(WorkerState(), charge("a"), ClaimWork("c1", "r1", 0.0, 1))
    state, _ = run(state, WorkFailed("charge-a", "other-claim", 1.0, "ignored"))
    assert state.pending[0].claim == "c1"
    state, _ = run(state, WorkFailed("charge-a", "c1", 1.0, "ProviderError: 503"))
    pending = state.pending[0]
    assert (pending.claim, pending.due, pending.error) == (None, 1.1, "ProviderError: 503")
    state, _ = run(state, ClaimWork("c2", "r1", 1.05, 1))
    assert granted(state, "c2") == []  # still backing off
    state, _ = run(state, ClaimWork("c3", "r1", 1.1, 1))
    assert granted(state, "c3") == ["charge-a"]
    assert [PAYMENTS.retry_delay(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]


def test_the_last_failed_attempt_gives_up_with_a_typed_answer() -> None:
    state, _ = run(WorkerState(), charge("a"))
    sent: list[Envelope[Any]] = []
    for attempt in range(1, Payments.max_attempts + 1):
        claim = f"c{attempt}"
        now = float(attempt * 100)
        state, out = run(
            state, ClaimWork(claim, "r", now, 1), WorkFailed("charge-a", claim, now, "boom")
        )
        sent.extend(out)
    assert replies(sent) == [("a", ChargeFailed("no answer after 6 attempts (boom)"))]
    assert (state.pending, state.gave_up) == ((), 1)


def test_a_request_whose_last_runner_died_is_given_up_at_the_next_claim() -> None:
    state, _ = run(WorkerState(), charge("a"))
    for attempt in range(1, Payments.max_attempts + 1):  # each runner dies: leases lapse
        state, _ = run(state, ClaimWork(f"c{attempt}", "r", attempt * 100.0, 1))
    state, sent = run(state, ClaimWork("last", "r", 10_000.0, 1))
    assert replies(sent) == [
        (
            "a",
            ChargeFailed(
                "no answer after 6 attempts (the runner of the last attempt stopped answering)"
            ),
        )
    ]


def test_released_grants_are_claimable_at_once_without_using_an_attempt() -> None:
    state, _ = run(WorkerState(), charge("a"), ClaimWork("c1", "r1", 0.0, 1))
    state, _ = run(state, ReleaseWork(("c1",)), ClaimWork("c2", "r2", 0.1, 1))
    assert granted(state, "c2") == ["charge-a"]
    assert state.pending[0].attempts == 1


# -- the runner ---------------------------------------------------------------------


async def test_retries_wait_on_the_ecosystem_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    provider = Provider(fail_next=1)
    monkeypatch.setenv(PROVIDER_URL, await provider.start())
    async with InMemory(refs.REGISTRY, clock=clock) as eco:
        await eco.send(refs.order(OrderId("o")).place(cents=5))
        async with asyncio.timeout(30):
            shard = make_ref(Ref, "payments", PAYMENTS.shard_of("charge-o"))
            async for worker in eco.follow(shard):
                if worker.pending and worker.pending[0].error is not None:
                    break
        await eco.settle()
        assert provider.performed == 1  # backing off on the manual clock: no retry yet
        clock.advance(Payments.backoff)
        async with asyncio.timeout(30):
            async for order in eco.follow(refs.order(OrderId("o"))):
                if order.status == "paid":
                    break
        assert (provider.performed, provider.applied) == (2, 1)
    await provider.stop()


# -- the generator and the checker --------------------------------------------------

WORKER = '''\
"""A mailer."""

from __future__ import annotations

from attrs import frozen

from pachytype import Activation, Address, Attempt, Entity, Worker


@frozen
class Sent:
    """Mail sent."""

    to: str


@frozen
class Bounced:
    """Mail bounced."""

    to: str


@frozen
class Send:
    """Send a mail."""

    to: str
    reply_to: Address[Sent | Bounced]


class Inbox(Entity[str, Sent | Bounced, int]):
    """Counts answers."""

    def init(self, id: str) -> int:
        return 0

    def activate(self, msg: Sent | Bounced, state: int) -> Activation[int]:
        return [], state + 1


class Mailer(Worker[Send, Sent | Bounced]):
    """Sends mail."""

    async def perform(self, request: Send, attempt: Attempt) -> Sent | Bounced:
        print("sending", request.to)  # I/O belongs here: not flagged
        self.last = request.to
        return Sent(request.to)
'''


def _package(root: Path, text: str) -> Path:
    package = root / "mail"
    package.mkdir()
    (package / "__init__.py").write_text('"""Mail."""\n')
    (package / "mail.py").write_text(textwrap.dedent(text))
    return package


def _generate_problems(root: Path, text: str) -> list[str]:
    package = _package(root, text)
    with pytest.raises(problems.GenerateError) as raised:
        generate(package)
    return [str(p).replace(str(package), "mail") for p in raised.value.problems]


def test_a_worker_gets_a_typed_ref_and_passes_the_check(tmp_path: Path) -> None:
    package = _package(tmp_path, WORKER)
    write(generate(package))
    text = (package / "refs.py").read_text()
    assert "def mailer() -> MailerRef:" in text
    assert "-> Request[WorkerState, Sent | Bounced]:" in text
    assert "messages=(_m_mail.Send, *WORKER_MESSAGES)," in text
    assert CliRunner().invoke(lock, [str(package)]).exit_code == 0
    result = CliRunner().invoke(check, [str(package), "--no-mypy"])
    assert result.output == f"pachytype check {package}: ok\n"


def test_calling_perform_directly_is_refused(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        WORKER
        + '''

async def shortcut(request: Send) -> None:
    """Skips the worker's entity."""
    await Mailer().perform(request, None)  # type: ignore[arg-type]
''',
    )
    write(generate(package))
    assert CliRunner().invoke(lock, [str(package)]).exit_code == 0
    result = CliRunner().invoke(check, [str(package), "--no-mypy"])
    lines = (package / "mail.py").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "Mailer().perform" in text)
    found = result.output.splitlines()[:-1]
    assert found == [
        f"{package / 'mail.py'}:{line}: worker Mailer: `perform` is "
        "called directly; a worker's requests go through its entity (return "
        "`refs.mailer().<request>(...)` from an activate, or `await eco.ask(...)`), which "
        "keeps the idempotency key, retries, and answers reply_to exactly once"
    ]


def test_an_impure_give_up_is_flagged_but_perform_is_not(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        WORKER.replace("from attrs import frozen", "import time\n\nfrom attrs import frozen")
        + '''
    def give_up(self, request: Send, failure: object) -> Sent | Bounced:
        """Bounce: pure, it runs in the worker's activation."""
        time.sleep(1)
        return Bounced(request.to)
''',
    )
    write(generate(package))
    assert CliRunner().invoke(lock, [str(package)]).exit_code == 0
    result = CliRunner().invoke(check, [str(package), "--no-mypy"])
    found = result.output.splitlines()[:-1]
    assert len(found) == 1
    assert "Mailer.give_up is not pure: it uses the clock (`time.sleep`)" in found[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("async def perform", "def perform"),
            "worker Mailer: it needs `async def perform(self, request, attempt) -> Result`",
        ),
        (
            ("Worker[Send, Sent | Bounced]", "Worker[Send]"),
            "worker Mailer: Worker takes 2 type arguments (Worker[Request, Result]), got 1",
        ),
        (
            ("Worker[Send, Sent | Bounced]", "Worker[Send, Sent]"),
            "worker Mailer: request Send has `reply_to: Address[mail.mail.Sent | "
            "mail.mail.Bounced]` but the worker returns `mail.mail.Sent`",
        ),
        (
            (
                "        return Sent(request.to)\n",
                "        return Sent(request.to)\n\n"
                "    def activate(self, msg: object, state: object) -> object:\n"
                "        return [], state\n",
            ),
            "worker Mailer: it defines `activate`, but a worker's entity side is the library's",
        ),
    ],
)
def test_worker_declaration_mistakes(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    found = _generate_problems(tmp_path, WORKER.replace(*change))
    assert len(found) == 1, found
    assert expected in found[0]
