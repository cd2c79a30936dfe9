"""Alembic environment: async, configured from the application's settings.

Online runs refuse a database marked staging or production from any other environment,
hold the same advisory lock as init_db (so neither interleaves with the other), and, when
a migration was applied, write the environment marker (see `marker_after_migration`).
Read-only commands (current, history, heads, show, check) write nothing. A downgrade
through an irreversible revision is refused before its first step.
"""

from __future__ import annotations

import asyncio
import sys
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.embedded import database_url
from app.db.engine import engine_from_settings, translate_connect_errors
from app.db.errors import ConfigurationError, DatabaseSetupError
from app.db.migrate.autogenerate import rewrite
from app.db.migrate.steps import (
    PROGRESS_OPTION,
    RETRY_OPTION,
    WATCH_OPTION,
    refuse_irreversible,
)
from app.db.reset.init_db import INIT_DB_LOCK_KEY
from app.db.reset.marker import (
    MARKER_TABLE,
    check_migration_allowed,
    count_user_tables,
    marker_after_migration,
    read_marker,
    write_marker,
)
from app.db.settings import Environment, load_settings
from app.models import Base

config = context.config
if config.cmd_opts is not None and config.config_file_name:  # the alembic command line
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """The marker table is bookkeeping, not part of the models."""
    return not (type_ == "table" and name == MARKER_TABLE)


# The caller may compare against other models (tests, in a throwaway copy); None, as
# pytest-alembic hands it when a team configured none, counts as none handed. A name of
# env.py's own, as Alembic's template has it, for the tools that look for it there.
target_metadata = config.attributes.get("target_metadata") or Base.metadata

OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "process_revision_directives": rewrite,
    "compare_type": True,
    "compare_server_default": True,
    "transaction_per_migration": True,
    "include_object": _include_object,
}


READ_ONLY_COMMANDS = frozenset({"current", "history", "heads", "branches", "show", "check"})
"""Commands that only read: on the embedded default they never create the database."""


def _command() -> str | None:
    """The alembic command being run from the command line, if it is one."""
    command = getattr(config.cmd_opts, "cmd", None)
    return getattr(command[0], "__name__", None) if command else None


async def _target() -> tuple[URL, Environment]:
    """The URL and environment: from the caller (tests, tools) or from the settings."""
    environment = config.attributes.get("environment") or settings.environment()
    url = config.attributes.get("url") or await database_url(
        settings, environment, create=_command() not in READ_ONLY_COMMANDS
    )
    return url, environment


def run_migrations_offline() -> None:
    url = settings.url() or URL.create("postgresql")
    context.configure(url=url, literal_binds=True, **OPTIONS)
    _guard_steps()
    with context.begin_transaction():
        context.run_migrations()


def _lock_retry_seconds() -> float:
    """The retry budget: `-x lock_retry_seconds=N`, else the caller's, else the setting."""
    return _positive_x(RETRY_OPTION, settings.migration_lock_retry_seconds)


def _positive_x(name: str, default: float) -> float:
    """A `-x name=seconds` option (or the caller's attribute), else `default`."""
    raw = context.get_x_argument(as_dictionary=True).get(name)
    if raw is None:
        return float(config.attributes.get(name) or default)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(f"-x {name} must be a positive number of seconds")
    return seconds


def _guard_steps() -> None:
    """Check the whole list of steps a command will run before the first one runs.

    Alembic has no hook for this; the configured context's step function is wrapped.
    """
    migration_context = context.get_context()
    plan = migration_context._migrations_fn
    if plan is None:
        return

    def checked(heads: Any, migration_context: Any) -> list[Any]:
        steps = list(plan(heads, migration_context))
        refuse_irreversible(steps)
        return steps

    migration_context._migrations_fn = checked


def _run_sync(conn: Connection, environment: Environment, url: URL) -> None:
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({INIT_DB_LOCK_KEY})")
    try:
        marker = read_marker(conn)
        check_migration_allowed(marker, environment)
        had_tables = count_user_tables(conn) > 0
        conn.commit()
        applied: list[object] = []
        ours: dict[str, Any] = {  # read back by the steps from the migration context
            RETRY_OPTION: _lock_retry_seconds(),
            WATCH_OPTION: url,
            PROGRESS_OPTION: _positive_x(PROGRESS_OPTION, 5.0),
        }
        context.configure(
            connection=conn,
            on_version_apply=lambda **kw: applied.append(kw["step"]),
            **ours,
            **OPTIONS,
        )
        _guard_steps()
        with context.begin_transaction():
            context.run_migrations()
        new_marker = marker_after_migration(marker, environment, had_tables=had_tables)
        if applied and new_marker is not None:
            write_marker(conn, new_marker, set_by="alembic")
        conn.commit()
    finally:
        conn.rollback()
        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({INIT_DB_LOCK_KEY})")
        conn.commit()


async def run_migrations_online() -> None:
    url, environment = await _target()
    engine = engine_from_settings(settings, url, null_pool=True)
    try:
        await _run_on_engine(engine, environment)
    finally:
        await engine.dispose()


async def _run_on_engine(engine: AsyncEngine, environment: Environment) -> None:
    with translate_connect_errors(engine.url):
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync, environment, engine.url)


def run_migrations_on(handed: object) -> None:
    """On what the caller hands over (`config.attributes["connection"]`, as pytest-alembic
    and Alembic's cookbook do: a connection, an engine or an async engine): its database,
    in the caller's environment (the settings' unless given). A handed connection is used
    as env.py uses its own (the lock, the marker, a commit per revision): the lock-safe
    steps build indexes CONCURRENTLY, which no transaction of the caller's can hold."""
    environment = config.attributes.get("environment") or settings.environment()
    if isinstance(handed, AsyncEngine):
        asyncio.run(_run_on_engine(handed, environment))
    elif isinstance(handed, Engine):
        with handed.connect() as conn:
            _run_sync(conn, environment, handed.url)
    elif isinstance(handed, Connection):
        _run_sync(handed, environment, handed.engine.url)
    else:
        raise ConfigurationError(
            f"config.attributes['connection'] is a {type(handed).__name__}, not a "
            "Connection, an Engine or an AsyncEngine"
        )


class IrreversibleCommandError(CommandError, NotImplementedError):
    """A refused downgrade, for a caller of alembic.command: Alembic's error, and the
    `NotImplementedError` that tools such as pytest-alembic read as a deliberate floor."""


try:
    settings = load_settings()
    if context.is_offline_mode():
        run_migrations_offline()
    elif config.attributes.get("connection") is not None:
        run_migrations_on(config.attributes["connection"])
    else:
        asyncio.run(run_migrations_online())
except DatabaseSetupError as exc:
    if config.cmd_opts is not None:  # the alembic command: one line on stderr, our exit code
        print(f"alembic: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    if isinstance(exc, NotImplementedError):
        raise IrreversibleCommandError(str(exc)) from None
    raise CommandError(str(exc)) from None  # a caller of alembic.command gets Alembic's error
