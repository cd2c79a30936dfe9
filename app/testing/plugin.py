"""pytest fixtures for a real PostgreSQL, for any suite of the platform. One line in the
suite's `conftest.py`:

    pytest_plugins = ["app.testing.plugin"]

(installed with the `testing` extra). Settings are read as everywhere else: the environment,
then `.env`. The server is TEST_DATABASE_URL's when set (CREATEDB is enough), otherwise the
suite's own embedded test server (in memory, fsync off). Every database of a run is named
`<name>_<suite>_...`: `<name>` is TEST_DATABASE_URL's database (`collection_test` on the
embedded server) and `<suite>` a short id of the suite's root folder, so two suites on one
server never share or drop each other's databases. A template database is built once per
schema fingerprint and reused by later runs; each pytest-xdist worker (or the one process
of a serial run) gets its own clone, `<name>_<suite>_<worker>`, dropped at the end. The
development database is never touched.

What the plugin changes in the test process, from its import to the end of the run (then
restored): `APP_ENV=test`, and `DATABASE_URL` set blank (which means unset and overrides a
`.env`), so code under test that reads the settings never reaches a real database.

Fixtures: `engine` (the worker's database), `session` (rolled back after the test, code
under test may commit), `database_of_its_own` (a fresh clone for a test that commits, uses
other connections or runs DDL; made one ahead in the background), `test_admin_url`,
`test_template`, `test_settings`; with pytest-alembic installed, its `alembic_config` and
`alembic_engine` on this project's migrations (`app.testing.alembic`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.embedded import DATABASE_NAMES
from app.db.embedded.test_server import server_url_for_tests, suite_id
from app.db.engine import create_engine
from app.db.errors import ConfigurationError
from app.db.settings import Environment, Settings, load_settings
from app.db.urls import parse_database_url
from app.models import Base
from app.testing.databases import (
    BASE_MAX_LENGTH,
    CloneFactory,
    ClonePool,
    DatabaseServer,
    Template,
    clone,
    drop,
    ensure_template,
    worker_name,
)

_SAVED_ENVIRONMENT = pytest.StashKey[dict[str, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test is collected: a developer's DATABASE_URL (in the environment or a
    `.env`) must never reach code under test."""
    config.stash[_SAVED_ENVIRONMENT] = {k: os.environ.get(k) for k in ("APP_ENV", "DATABASE_URL")}
    os.environ["APP_ENV"] = "test"
    os.environ["DATABASE_URL"] = ""  # blank is unset, and the environment beats a .env


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the process its environment back."""
    for name, value in config.stash.get(_SAVED_ENVIRONMENT, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    """The settings, read the documented way (environment, then `.env`)."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def test_server(request: pytest.FixtureRequest, test_settings: Settings) -> DatabaseServer:
    suite = request.config.rootpath
    try:
        if test_settings.test_database_url is not None:
            url = parse_database_url(
                test_settings.test_database_url.get_secret_value(), setting="TEST_DATABASE_URL"
            )
            admin, name = url.set(database="postgres"), str(url.database)
        else:
            admin = server_url_for_tests(test_settings, suite)
            name = DATABASE_NAMES[Environment.TEST]
    except ConfigurationError as exc:
        raise pytest.UsageError(str(exc)) from None
    if name == DATABASE_NAMES[Environment.DEVELOPMENT]:
        raise pytest.UsageError(f"TEST_DATABASE_URL names {name}, the development database")
    base = f"{name}_{suite_id(suite)}"
    if len(base.encode()) > BASE_MAX_LENGTH:
        raise pytest.UsageError(
            f"TEST_DATABASE_URL's database name {name!r} is too long for the names made from "
            f"it: at most {BASE_MAX_LENGTH - 7} bytes (PostgreSQL cuts names at 63)"
        )
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


if importlib.util.find_spec("pytest_alembic") is not None:
    # pytest-alembic's fixtures on this project's migrations: `pytest --test-alembic`.
    from app.testing.alembic import alembic_config, alembic_engine  # noqa: F401
