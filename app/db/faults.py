"""Whose fault a database error is: the infrastructure's (wait and retry) or ours (loud).

A lost connection, a server restarting or shutting down, a failover's read-only standby,
a timeout, a deadlock or a serialization failure go away by themselves: a caller waits for
the database and sends the statement again. A constraint violation, a syntax error or a
wrong parameter never goes away: retrying it hides a bug behind an "outage".
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

from app.db.errors import ConnectionFailedError, first_line

_PASSING_CLASSES = ("08", "40", "53", "57", "58")
"""SQLSTATE classes that pass: connection exception, transaction rollback (serialization
failure, deadlock), insufficient resources, operator intervention (shutdown, cancel,
cannot connect now), system error."""
_PASSING_STATES = frozenset({"25006", "55P03"})
"""Read-only transaction (a failover's old primary), lock not available (lock_timeout)."""
_CLOSED = ("connection is closed", "connection was closed", "underlying connection is closed")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` is the infrastructure's: retrying the same statement later may work."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        cause = exc.orig.__cause__ if exc.orig is not None else None
        inner = cause or exc.orig
        return inner is not None and is_outage(inner)
    if isinstance(exc, ConnectionFailedError):
        return True  # cannot connect now: the same URL worked before
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _PASSING_CLASSES or state in _PASSING_STATES
    if isinstance(exc, asyncpg.InterfaceError):
        return any(words in str(exc) for words in _CLOSED)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True  # the protocol's state broke: only a fresh connection mends it
    return isinstance(exc, OSError | TimeoutError | asyncio.TimeoutError | EOFError)


def describe(exc: BaseException) -> str:
    """One line for a log: the server's SQLSTATE and message, or the error's first line."""
    error: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        error = exc.orig.__cause__ or exc.orig
    state = getattr(error, "sqlstate", None)
    return f"[{state}] {first_line(error)}" if state else first_line(error)
