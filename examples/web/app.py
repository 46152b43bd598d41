"""A web front for the usernames example: HTTP handlers that ask entities.

Design note. A web process runs no entities: it is a client of the
ecosystem. On PostgreSQL it opens `Postgres(dsn, REGISTRY, node=False)`
(nodes started with `pachytype node` run the entities; any number of web
processes share them); with no DSN it runs a `LocalDisk` of its own (one
process: its entities run in it). Handlers are thin: each turns a request
into one typed `ask` (or `state` read) with a deadline, and the answer into
a status code:

* `POST /names/{name}` with `{"user": "..."}` asks the name's shard to
  claim it: 201 `Claimed`, 409 `Taken`.
* `GET /names/{name}` reads the shard's state: 200 with the owner, or 404.
* A deadline that passes is a 503 saying the request may still take effect
  (an ask is not withdrawn: a retry of the same claim is harmless).

Run it: `PACHYTYPE_DSN=postgresql://... uvicorn --factory examples.web.app:from_environment`
(with `pachytype node --dsn ... --schema web examples.usernames.refs:REGISTRY`
running somewhere), or without `PACHYTYPE_DSN` for a LocalDisk in
`usernames.db`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.usernames import refs
from examples.usernames.shard import shard_of
from examples.usernames.signup import Claimed, UserId
from pachytype import DeadlineError, Ecosystem, LocalDisk, Postgres

DEADLINE: Final = 5.0
"""Seconds a handler waits for its answer before it answers 503."""


def create_app(eco: Ecosystem, deadline: float = DEADLINE) -> Starlette:
    """The app over `eco`, which it opens at startup and closes at shutdown."""

    async def claim(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        body = await request.json()
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            return JSONResponse({"error": 'send {"user": "<user id>"}'}, status_code=422)
        shard = refs.shard(shard_of(name))
        try:
            answer = await eco.ask(
                lambda r: shard.claim(name=name, user=UserId(user), reply_to=r),
                timeout=deadline,
            )
        except DeadlineError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        if isinstance(answer, Claimed):
            return JSONResponse({"name": name, "user": user}, status_code=201)
        return JSONResponse({"error": f"{name!r} is taken"}, status_code=409)

    async def owner(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            state = await eco.state(refs.shard(shard_of(name)), timeout=deadline)
        except DeadlineError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        user = state.owners.get(name)
        if user is None:
            return JSONResponse({"error": f"{name!r} is free"}, status_code=404)
        return JSONResponse({"name": name, "user": user})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with eco:
            yield

    return Starlette(
        routes=[
            Route("/names/{name}", claim, methods=["POST"]),
            Route("/names/{name}", owner, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def from_environment() -> Starlette:
    """The app over `Postgres(PACHYTYPE_DSN, node=False)` (schema
    `PACHYTYPE_SCHEMA`, default "web"), or over `LocalDisk(PACHYTYPE_DB,
    default "usernames.db")` when no DSN is set."""
    dsn = os.environ.get("PACHYTYPE_DSN")
    if dsn:
        schema = os.environ.get("PACHYTYPE_SCHEMA", "web")
        return create_app(Postgres(dsn, refs.REGISTRY, schema=schema, node=False))
    return create_app(LocalDisk(os.environ.get("PACHYTYPE_DB", "usernames.db"), refs.REGISTRY))
