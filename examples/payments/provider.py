"""The payment provider: a small HTTP service outside the ecosystem, and the
client the workers use to reach it.

Design note. The provider charges each idempotency key once: a request
with a key it has seen answers the first charge again (that is how an
at-least-once worker becomes an exactly-once charge). It keeps the figures
the tests read: requests received (performed), keys charged (applied),
requests for a key already charged (duplicates). Faults, set by the test:
fail the next n requests before charging (503), charge then lose the
answer (500, so the worker retries), charge then stall without answering
(until `release`), decline some orders (402, a final answer). Stdlib only:
asyncio streams and a minimal HTTP/1.1 (one request per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any
from urllib.parse import urlsplit

import orjson
from attrs import define, field

PROVIDER_URL = "PAYMENTS_PROVIDER_URL"
"""The environment variable the workers read the provider's base URL from."""


class ProviderError(Exception):
    """The provider could not be reached or answered with an error: retry."""


async def post_json(path: str, body: dict[str, Any], url: str | None = None) -> tuple[int, Any]:
    """POST `body` as JSON to the provider; `(status, decoded JSON answer)`."""
    base = urlsplit(url or os.environ.get(PROVIDER_URL, ""))
    if not base.hostname or not base.port:
        raise ProviderError(f"set {PROVIDER_URL} to the provider's http://host:port")
    payload = orjson.dumps(body)
    try:
        reader, writer = await asyncio.open_connection(base.hostname, base.port)
    except OSError as error:
        raise ProviderError(f"provider unreachable: {error}") from error
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {base.hostname}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, content = answer.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
        return status, orjson.loads(content) if content else None
    except (IndexError, ValueError) as error:
        raise ProviderError(f"provider answered something that is not HTTP: {answer!r}") from error


@define
class Provider:
    """The provider's state and faults; `start()` serves it on a local port."""

    charges: dict[str, dict[str, Any]] = field(factory=dict)
    """Idempotency key -> the charge made for it."""
    refunds: dict[str, dict[str, Any]] = field(factory=dict)
    performed: int = 0
    """Charge requests received (every attempt of every worker)."""
    duplicates: int = 0
    """Charge requests for a key already charged (answered with the first charge)."""
    fail_next: int = 0
    lose_next: int = 0
    stalling: bool = False
    declined: set[str] = field(factory=set)
    stalled: int = 0
    """Requests charged and held without an answer right now."""
    _release: asyncio.Event = field(factory=asyncio.Event)
    _server: asyncio.Server | None = None
    url: str = ""

    @property
    def applied(self) -> int:
        """Charges made: one per idempotency key."""
        return len(self.charges)

    async def start(self) -> str:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._server = server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()

    def stall(self) -> None:
        """From now on, charge then hold the answer until `release()`."""
        self._release.clear()
        self.stalling = True

    def release(self) -> None:
        """Answer the held requests and stop stalling."""
        self.stalling = False
        self._release.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = orjson.loads(await reader.readexactly(length))
            path = head.split(b" ", 2)[1].decode()
            status, answer = await self._handle(path, body)
            data = orjson.dumps(answer)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
            pass  # the worker went away (killed, timed out): it will retry
        finally:
            writer.close()

    async def _handle(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/refund":
            refund = self.refunds.setdefault(
                body["key"], {"refund": f"re_{len(self.refunds) + 1}", "charge": body["charge"]}
            )
            return 200, refund
        self.performed += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"error": "try again"}
        if body["order"] in self.declined:
            return 402, {"declined": "card declined"}
        key = body["key"]
        if key in self.charges:
            self.duplicates += 1
        else:
            number = len(self.charges) + 1
            self.charges[key] = {"charge": f"ch_{number}", "order": body["order"], **body}
        charge = self.charges[key]
        if self.lose_next > 0:
            self.lose_next -= 1
            return 500, {"error": "charged, but the answer was lost"}
        if self.stalling:
            self.stalled += 1
            try:
                await self._release.wait()
            finally:
                self.stalled -= 1
        return 200, {"charge": charge["charge"]}
