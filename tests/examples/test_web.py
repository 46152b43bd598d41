"""The web example: Starlette handlers that ask entities, over a LocalDisk of
their own, and as a `node=False` Postgres client of a node in another
process. Requests go through httpx to the app (ASGI, in the test's event
loop, so the ecosystem runs on the main thread as in a server), with the
app's lifespan opening and closing the ecosystem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from examples.usernames import refs
from examples.web.app import create_app
from pachytype import Ecosystem, LocalDisk, Postgres
from pachytype._postgres.testing import (
    drop_schemas,
    new_schema_name,
    require_postgres,
    spawn_node,
    stop_processes,
)


@asynccontextmanager
async def serving(eco: Ecosystem, deadline: float = 10.0) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app over `eco`, between its startup and shutdown."""
    app = create_app(eco, deadline=deadline)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            yield client


async def claims_and_reads(client: httpx.AsyncClient) -> None:
    """The flows every deployment serves the same way."""
    response = await client.post("/names/ada", json={"user": "u1"})
    assert (response.status_code, response.json()) == (201, {"name": "ada", "user": "u1"})
    response = await client.post("/names/ada", json={"user": "u2"})
    assert (response.status_code, response.json()) == (409, {"error": "'ada' is taken"})
    assert (await client.get("/names/ada")).json() == {"name": "ada", "user": "u1"}
    response = await client.get("/names/grace")
    assert (response.status_code, response.json()) == (404, {"error": "'grace' is free"})
    response = await client.post("/names/grace", json={})
    assert (response.status_code, response.json()) == (422, {"error": 'send {"user": "<user id>"}'})


async def test_the_app_over_a_localdisk_of_its_own(tmp_path: Path) -> None:
    async with serving(LocalDisk(tmp_path / "names.db", refs.REGISTRY)) as client:
        await claims_and_reads(client)
    # The names outlive the process: a new app over the same file still knows them.
    async with serving(LocalDisk(tmp_path / "names.db", refs.REGISTRY)) as client:
        assert (await client.get("/names/ada")).json() == {"name": "ada", "user": "u1"}


async def test_the_app_as_a_postgres_client_with_no_node_answers_503() -> None:
    dsn = require_postgres()
    schema = new_schema_name()
    eco = Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=4)
    try:
        async with serving(eco, deadline=0.5) as client:
            response = await client.post("/names/ada", json={"user": "u1"})
            assert response.status_code == 503
            assert "got no answer within 0.5 s" in response.json()["error"]
    finally:
        drop_schemas(dsn, [schema])


async def test_the_app_as_a_postgres_client_of_a_node_in_another_process(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = new_schema_name()
    eco = Postgres(dsn, refs.REGISTRY, schema=schema, node=False, partitions=4)
    try:
        async with serving(eco, deadline=30.0) as client:
            # The app created the schema; the node joins it and runs the entities.
            node = spawn_node(
                dsn,
                schema,
                "examples.usernames.refs:REGISTRY",
                node_id="web-node",
                lease=2.0,
                partitions=4,
                log_dir=tmp_path,
            )
            try:
                await claims_and_reads(client)
            finally:
                stop_processes([node])
    finally:
        drop_schemas(dsn, [schema])
