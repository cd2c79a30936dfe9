"""pytest fixtures for a real PostgreSQL, for any suite of the platform. One line in the
suite's `conftest.py`:

    pytest_plugins = ["app.testing.plugin"]

The server is TEST_DATABASE_URL's when set (its database name is the base of every name
below; CREATEDB is enough), otherwise the embedded test server (in memory, fsync off). A
template database is built once per schema fingerprint and reused by later runs; each
pytest-xdist worker (or the one process of a serial run) gets its own clone,
`<base>_<worker>`, dropped at the end. The development database is never touched.

Fixtures: `engine` (the worker's database), `session` (rolled back after the test, code
under test may commit), `database_of_its_own` (a fresh clone for a test that commits, uses
other connections or runs DDL; made one ahead in the background), `test_admin_url`,
`test_template`, `test_settings`.
"""

from __future__ import annotations

import os

# Before any settings are read: a developer's DATABASE_URL must never reach the tests.
os.environ["APP_ENV"] = "test"
os.environ.pop("DATABASE_URL", None)

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.embedded import DATABASE_NAMES, server_url_for_tests
from app.db.engine import create_engine
from app.db.settings import Environment, Settings
from app.db.urls import parse_database_url
from app.models import Base
from app.testing.databases import (
    CloneFactory,
    ClonePool,
    DatabaseServer,
    Template,
    clone,
    drop,
    ensure_template,
    worker_name,
)


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return Settings(_env_file=None)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_server(test_settings: Settings) -> DatabaseServer:
    if test_settings.test_database_url is not None:
        url = parse_database_url(
            test_settings.test_database_url.get_secret_value(), setting="TEST_DATABASE_URL"
        )
        admin, base = url.set(database="postgres"), str(url.database)
    else:
        admin, base = server_url_for_tests(test_settings), DATABASE_NAMES[Environment.TEST]
    if base == DATABASE_NAMES[Environment.DEVELOPMENT]:
        raise pytest.UsageError(f"TEST_DATABASE_URL names {base}, the development database")
    return DatabaseServer(admin, base)


@pytest.fixture(scope="session")
def test_admin_url(test_server: DatabaseServer) -> URL:
    return test_server.admin_url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_template(test_server: DatabaseServer) -> Template:
    """Built when the models or migrations changed since the last run, else reused."""
    return await ensure_template(test_server.admin_url, test_server.base, Base.metadata)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_url(
    request: pytest.FixtureRequest, test_server: DatabaseServer, test_template: Template
) -> AsyncIterator[URL]:
    """This worker's database: a clone of the template, dropped at the end of the run."""
    name = f"{test_server.base}_{worker_name(request.config)}"
    url = await clone(test_server.admin_url, test_template.name, name)
    yield url
    await drop(test_server.admin_url, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(test_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(test_url, application_name="collection-jobs-tests")
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test.

    Code under test may commit: with `create_savepoint` its commits only release
    savepoints of the outer transaction.
    """
    async with engine.connect() as conn:
        outer = await conn.begin()
        async with AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as session:
            yield session
        await outer.rollback()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def clone_pool(
    request: pytest.FixtureRequest, test_server: DatabaseServer, test_template: Template
) -> AsyncIterator[ClonePool]:
    prefix = f"{test_server.base}_{worker_name(request.config)}"
    pool = ClonePool(test_server.admin_url, test_template.name, prefix)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def database_of_its_own(
    test_server: DatabaseServer, clone_pool: ClonePool
) -> AsyncIterator[CloneFactory]:
    """Make fresh clones of the template for this test (real commits, other connections,
    DDL); each is dropped after the test."""
    made: list[str] = []

    async def make() -> URL:
        url = await clone_pool.take()
        made.append(str(url.database))
        return url

    yield make
    for name in made:
        await drop(test_server.admin_url, name)
