"""This project's own suite on the plugin it ships (`app.testing.plugin`), plus what only
these tests need: empty scratch databases, limited roles, a password-protected server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy.engine import URL

from app.db.engine import connect, create_engine
from app.testing.databases import CloneFactory, DatabaseServer, drop, empty, worker_name
from tests.helpers.workers import STARTED, Database

pytest_plugins = ["app.testing.plugin", "tests.helpers.browser"]

ScratchFactory = Callable[[], Awaitable[URL]]
RoleFactory = Callable[[URL], Awaitable[URL]]


@pytest.fixture
async def scratch_db(
    request: pytest.FixtureRequest, test_server: DatabaseServer
) -> AsyncIterator[ScratchFactory]:
    """Make empty databases on the test server (for migrations from nothing), dropped
    after the test."""
    made: list[str] = []
    test_url = test_server.admin_url
    prefix = f"{test_server.base}_{worker_name(request.config)}_scratch"

    async def make() -> URL:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return await empty(test_url, name)

    yield make
    for name in made:
        await drop(test_url, name)


@pytest.fixture(scope="session")
def secured_server() -> Iterator[URL]:
    """A throwaway server with password authentication on 127.0.0.1 (no TLS)."""
    from tests.helpers.password_server import password_server

    with password_server() as url:
        yield url


@pytest.fixture
async def limited_role() -> AsyncIterator[RoleFactory]:
    """Make a login role that may connect to a database and read its tables, nothing more.

    Returns the database's URL as that role; the role is dropped after the test.
    """
    made: list[tuple[str, URL]] = []

    async def make(url: URL) -> URL:
        role = f"limited_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        conn = await connect(url)
        try:
            await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        finally:
            await conn.close()
        made.append((role, url))
        return url.set(username=role, password=password)

    yield make
    for role, url in made:
        conn = await connect(url)
        try:
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")
        finally:
            await conn.close()


@pytest.fixture
async def db(database_of_its_own: CloneFactory) -> AsyncIterator[Database]:
    """A database of its own for a worker test, with ways to look into it."""
    url = await database_of_its_own()
    engine = create_engine(url, null_pool=True)
    yield Database(url, engine)
    await engine.dispose()


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    """Kill the worker processes a test started and did not stop (it failed first)."""
    yield
    for process in STARTED:
        if process.poll() is None:
            process.kill()
            process.communicate()
    STARTED.clear()
