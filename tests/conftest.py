"""Test harness: a real PostgreSQL, the schema built once, each test rolled back.

The server is TEST_DATABASE_URL when set (the tests own that database and wipe it),
otherwise the embedded server's `collection_test` database, never the development one.
"""

from __future__ import annotations

import os

# Before `app` is imported: nothing in the tests may pick up a developer's DATABASE_URL.
os.environ["APP_ENV"] = "test"
os.environ.pop("DATABASE_URL", None)

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.embedded import DATABASE_NAMES, ensure_database, server_url
from app.db.engine import connect, create_engine
from app.db.schema import init_db
from app.db.settings import Environment, Settings
from app.db.urls import parse_database_url

ScratchFactory = Callable[[], Awaitable[URL]]
RoleFactory = Callable[[URL], Awaitable[URL]]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture(scope="session")
async def test_url(settings: Settings) -> URL:
    if settings.test_database_url is not None:
        url = parse_database_url(
            settings.test_database_url.get_secret_value(), setting="TEST_DATABASE_URL"
        )
        return await ensure_database(url.set(database="postgres"), str(url.database))
    admin = server_url(settings)
    return await ensure_database(admin, DATABASE_NAMES[Environment.TEST])


@pytest.fixture(scope="session")
async def engine(test_url: URL) -> AsyncIterator[AsyncEngine]:
    """The test database, rebuilt from the models once per test session."""
    engine = create_engine(test_url, application_name="collection-jobs-tests")
    await init_db(engine, environment=Environment.TEST)
    yield engine
    await engine.dispose()


@pytest.fixture
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


@pytest.fixture
async def scratch_db(test_url: URL) -> AsyncIterator[ScratchFactory]:
    """Make empty databases on the test server, dropped after the test."""
    made: list[str] = []

    async def make() -> URL:
        name = f"{test_url.database}_scratch_{uuid.uuid4().hex[:8]}"
        conn = await connect(test_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return test_url.set(database=name)

    yield make
    if made:
        conn = await connect(test_url)
        try:
            for name in made:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def secured_server() -> Iterator[URL]:
    """A throwaway server with password authentication on 127.0.0.1 (no TLS)."""
    from tests.password_server import password_server

    with password_server() as url:
        yield url


@pytest.fixture
async def limited_role(test_url: URL) -> AsyncIterator[RoleFactory]:
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
