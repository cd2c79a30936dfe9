"""Whose fault an error is: the infrastructure's (waited out and sent again) or ours (one
loud line, never retried)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from app.db.errors import ConnectionFailedError
from app.db.faults import describe, is_outage


def server_error(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls(message)


OUTAGES = {
    "the server shut down": server_error(asyncpg.AdminShutdownError, "terminating connection"),
    "cannot connect now": server_error(asyncpg.CannotConnectNowError, "starting up"),
    "a lost connection": asyncpg.ConnectionDoesNotExistError("connection was closed"),
    "a closed connection": asyncpg.InterfaceError("connection is closed"),
    "a deadlock": server_error(asyncpg.DeadlockDetectedError, "deadlock detected"),
    "a failover's read-only standby": server_error(
        asyncpg.ReadOnlySQLTransactionError, "read-only transaction"
    ),
    "a statement timeout": server_error(asyncpg.QueryCanceledError, "canceling statement"),
    "a refused socket": ConnectionRefusedError(111, "Connect call failed"),
    "a client timeout": TimeoutError(),
    "cannot connect (ours, translated)": ConnectionFailedError("cannot connect to x"),
    "the protocol broken by a restart": asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    ),
}

BUGS = {
    "a unique violation": server_error(asyncpg.UniqueViolationError, "duplicate key"),
    "a check violation": server_error(asyncpg.CheckViolationError, "violates check"),
    "a syntax error": server_error(asyncpg.PostgresSyntaxError, "syntax error"),
    "an undefined column": server_error(asyncpg.UndefinedColumnError, "no such column"),
    "a prepared statement missing": server_error(
        asyncpg.InvalidSQLStatementNameError, "prepared statement does not exist"
    ),
    "two operations on one connection": asyncpg.InterfaceError(
        "cannot perform operation: another operation is in progress"
    ),
    "a wrong argument": asyncpg.DataError("invalid input for query argument $1"),
    "a key error of ours": KeyError("status_1"),
}


@pytest.mark.parametrize("error", OUTAGES.values(), ids=OUTAGES.keys())
def test_the_infrastructure_s_errors_are_outages(error: BaseException) -> None:
    assert is_outage(error)
    assert is_outage(sa_exc.DBAPIError("SELECT 1", None, error))  # as SQLAlchemy wraps it


@pytest.mark.parametrize("error", BUGS.values(), ids=BUGS.keys())
def test_our_errors_are_never_outages(error: BaseException) -> None:
    assert not is_outage(error)


def test_a_server_error_is_described_with_its_sqlstate() -> None:
    error = server_error(asyncpg.CheckViolationError, "violates check constraint\nDETAIL: x")
    assert describe(error) == "[23514] violates check constraint"
