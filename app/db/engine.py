"""Engines and sessions. Nothing here runs at import: callers build an engine and dispose it."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.db.errors import AuthenticationFailedError, ConnectionFailedError, first_line
from app.db.settings import Settings
from app.db.urls import (
    as_url,
    asyncpg_connect_args,
    describe_url,
    engine_url,
    ssl_connect_args,
)


def create_engine(
    url: URL | str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    pool_recycle: int = 1800,
    connect_timeout: float = 10.0,
    echo: bool = False,
    disable_prepared_statements: bool = False,
    application_name: str = "collection-jobs",
    null_pool: bool = False,
    command_timeout: float | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """Build an asyncpg engine for `url` (a URL, or a string in any accepted form).

    `disable_prepared_statements` is for PgBouncer in transaction mode, where a named
    prepared statement may land on another server connection: asyncpg's and SQLAlchemy's
    statement caches are turned off and every statement gets a unique name.
    `null_pool` opens a connection per checkout (scripts, migrations, PgBouncer).
    `command_timeout` (seconds) bounds every statement: for a caller that must notice a
    dead link (the worker), not for migrations, whose long steps are meant to wait.
    `pre_ping` tests a pooled connection before each use, a round trip each time: off for
    a caller that retries a failed statement anyway (the worker).
    """
    url = as_url(url)
    connect_args: dict[str, Any] = {
        "timeout": connect_timeout,
        "server_settings": {"application_name": application_name},
        **ssl_connect_args(url),
    }
    if command_timeout is not None:
        connect_args["command_timeout"] = command_timeout
    url = engine_url(url)
    if disable_prepared_statements:
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid.uuid4()}__"
    if null_pool:
        return create_async_engine(url, echo=echo, poolclass=NullPool, connect_args=connect_args)
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
    )


def engine_from_settings(settings: Settings, url: URL, *, null_pool: bool = False) -> AsyncEngine:
    """`create_engine` with the pool, timeout and PgBouncer options taken from the settings."""
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_timeout=settings.db_connect_timeout,
        echo=settings.db_echo,
        disable_prepared_statements=settings.db_disable_prepared_statements,
        application_name=settings.db_application_name,
        null_pool=null_pool,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (no implicit refresh in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection whose every statement commits on its own: for single-statement
    writes that need no unit of work around them (progress reports, a worker's claims)."""
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


async def connect(
    url: URL | str,
    *,
    connect_timeout: float = 10.0,
    application_name: str = "collection-jobs",
    statement_cache_size: int = 100,
) -> asyncpg.Connection:
    """A plain asyncpg connection (no pool), failures translated as for the engine.
    `statement_cache_size=0` keeps no named statements (PgBouncer in transaction mode)."""
    url = as_url(url)
    with translate_connect_errors(url):
        return await asyncpg.connect(
            **asyncpg_connect_args(url),
            timeout=connect_timeout,
            server_settings={"application_name": application_name},
            statement_cache_size=statement_cache_size,
        )


async def create_pool(
    url: URL | str,
    *,
    size: int,
    connect_timeout: float = 10.0,
    command_timeout: float | None = None,
    application_name: str = "collection-jobs",
    statement_cache_size: int = 100,
) -> asyncpg.Pool:
    """A plain asyncpg pool of `size` connections, for a caller whose statements are all
    the service's, written once and sent by the driver (the worker): a checkout costs no
    SQLAlchemy work. JSON comes back decoded, as from the engines. `statement_cache_size=0`
    keeps no named statements (PgBouncer in transaction mode)."""
    url = as_url(url)
    with translate_connect_errors(url):
        pool = await asyncpg.create_pool(
            **asyncpg_connect_args(url),
            min_size=1,
            max_size=size,
            timeout=connect_timeout,
            command_timeout=command_timeout,
            server_settings={"application_name": application_name},
            statement_cache_size=statement_cache_size,
            init=_decode_json,
            # A released connection is rolled back if a transaction was left open, and
            # nothing more: the service's statements leave no session state (no SET, no
            # LISTEN, no session lock), so asyncpg's full reset would only cost a round trip
            # on every release.
            reset=_nothing_to_reset,
        )
    assert pool is not None
    return pool


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    return None


async def _decode_json(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@contextmanager
def translate_connect_errors(url: URL) -> Iterator[None]:
    """Turn the ways a connection attempt fails into one-line, password-free errors."""
    target = describe_url(url)
    try:
        yield
    except sa_exc.DBAPIError as exc:
        cause = exc.orig.__cause__ if exc.orig is not None else None
        _raise_for(cause or exc.orig, target)
        raise
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _raise_for(exc, target)
        raise


def _raise_for(cause: BaseException | None, target: str) -> None:
    if isinstance(
        cause, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        raise AuthenticationFailedError(
            f"authentication failed for {target}: {first_line(cause)}"
        ) from None
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        raise ConnectionFailedError(f"{target} does not exist") from None
    if isinstance(cause, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        raise ConnectionFailedError(f"cannot connect to {target}: {first_line(cause)}") from None
    if isinstance(cause, socket.gaierror):
        raise ConnectionFailedError(f"cannot resolve the host of {target}") from None
    if isinstance(cause, asyncio.TimeoutError | TimeoutError):
        raise ConnectionFailedError(f"timed out connecting to {target}") from None
    if isinstance(cause, OSError):
        raise ConnectionFailedError(
            f"cannot connect to {target}: {cause.strerror or first_line(cause)}"
        ) from None
