"""What the job service's modules share: the tables, the executor type, the clock, and
statements built once and sent through the driver."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import JSON, Executable, func, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import Base, CollectionJob, CollectionJobAttempt, DataCollectionLog, JobStatus

if TYPE_CHECKING:
    Executor = AsyncSession | AsyncConnection | asyncpg.Connection | PoolConnectionProxy[Any]
else:  # asyncpg's pool connection is generic to the type checker alone
    Executor = AsyncSession | AsyncConnection | asyncpg.Connection | PoolConnectionProxy
"""Where the one-statement calls run: a session inside the caller's unit of work, or a
connection in autocommit mode (SQLAlchemy's, or a plain asyncpg one, as the worker's pool
and heartbeat hold), where each call is its own transaction and costs one round trip
instead of three (BEGIN, the statement, COMMIT)."""

JOBS = Base.metadata.tables[CollectionJob.__tablename__]
LOGS = Base.metadata.tables[DataCollectionLog.__tablename__]
ATTEMPTS = Base.metadata.tables[CollectionJobAttempt.__tablename__]
"""The tables, for the statements that need no ORM objects back (the fast paths)."""

now = func.statement_timestamp
"""The time of the statement: the same instant `updated_at` gets on every update."""


@dataclass(frozen=True)
class Statement:
    """A statement written once in SQL: SQLAlchemy's form for a session or a connection in
    a transaction, asyncpg's (`$1`, ...) for the driver, which prepares it once per
    connection instead of SQLAlchemy compiling it on every call."""

    clause: Executable
    sql: str
    parameters: tuple[str, ...]
    constants: Mapping[str, Any]
    """The values a Core statement binds itself (`status = 'running'` as `status_1`)."""


def statement(sql: str | Executable) -> Statement:
    """`sql` (text with `:name` parameters, or a Core statement with named bindparams)
    compiled once for asyncpg."""
    clause = text(sql) if isinstance(sql, str) else sql
    compiled = clause.compile(dialect=asyncpg_dialect())  # type: ignore[attr-defined,no-untyped-call]
    positions = tuple(compiled.positiontup or ())
    if "POSTCOMPILE" in compiled.string:  # a list bound as a parameter: SQLAlchemy's alone
        raise ValueError("a statement for the driver cannot bind a list with IN (...)")
    for name, value in compiled.params.items():
        if value is not None and isinstance(compiled.binds[name].type, JSON):
            # Encoded by SQLAlchemy's bind processor, which the driver's form skips.
            raise ValueError(f"a statement for the driver cannot bind JSON ({name})")
    return Statement(clause, compiled.string, positions, dict(compiled.params))


def is_autocommit(db: object) -> bool:
    """An `AsyncConnection` in autocommit mode: no transaction of the caller's to join."""
    if not isinstance(db, AsyncConnection) or db.sync_connection is None:
        return False
    return db.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


async def driver_of(db: Executor) -> asyncpg.Connection | PoolConnectionProxy[Any] | None:
    """The asyncpg connection to send to directly, or None to go through SQLAlchemy."""
    if isinstance(db, asyncpg.Connection | PoolConnectionProxy):
        return db
    if is_autocommit(db):
        assert isinstance(db, AsyncConnection)
        raw = (await db.get_raw_connection()).driver_connection
        assert isinstance(raw, asyncpg.Connection)
        return raw
    return None


async def fetch(db: Executor, st: Statement, params: Mapping[str, Any]) -> Sequence[Any]:
    """The rows of `st` (none for a statement that returns none), run on `db`."""
    driver = await driver_of(db)
    if driver is not None:
        args = [params[n] if n in params else st.constants[n] for n in st.parameters]
        try:
            return await driver.fetch(st.sql, *args)
        except asyncpg.PostgresError as exc:
            if not isinstance(exc, asyncpg.PostgresConnectionError):
                raise  # the server answered: the connection is fine
            await _invalidate(db, exc)
            raise
        except BaseException as exc:  # lost, timed out or cancelled mid-statement
            await _invalidate(db, exc)
            if isinstance(exc, asyncpg.exceptions.InternalClientError):
                # Its protocol is broken: the pool makes a new one (a connection the pool
                # has taken back already refuses the call; the caller hears of `exc`).
                with contextlib.suppress(Exception):
                    driver.terminate()
            raise
    assert isinstance(db, AsyncSession | AsyncConnection)
    result = await db.execute(st.clause, dict(params))
    return list(result.all()) if result.returns_rows else []  # type: ignore[attr-defined]


async def _invalidate(db: Executor, exc: BaseException) -> None:
    """A connection the driver failed on goes back to the pool as dead, never reused
    (SQLAlchemy does this for the statements it sends; these bypass it)."""
    if isinstance(db, AsyncConnection) and not db.invalidated:
        exception = exc if isinstance(exc, Exception) else None
        with contextlib.suppress(Exception):
            await db.invalidate(exception)


JOB_COLUMNS = tuple(c.name for c in JOBS.c)


def job_from_row(row: Sequence[Any]) -> CollectionJob:
    """A job from a row whose first columns are `JOB_COLUMNS` (a statement sent through the
    driver): a plain object, in no session."""
    values = dict(zip(JOB_COLUMNS, row[: len(JOB_COLUMNS)], strict=True))
    values["status"] = JobStatus(values["status"])
    return CollectionJob(**values)


JOB_STATE = statement(
    "SELECT status, collection_types, started_at FROM collection_jobs WHERE id = :job",
)
"""A job's status, types and run: what a refused write reads to say why."""
