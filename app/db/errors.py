"""Expected failures of the data layer, each with the exit code its command-line tools use."""

from __future__ import annotations

from typing import Any


def first_line(exc: BaseException) -> str:
    """What a log line or an error message says of `exc`: its first line, or its type."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class DatabaseSetupError(Exception):
    """An expected failure: commands print its message as one line and exit with `exit_code`."""

    exit_code = 1


class ConfigurationError(DatabaseSetupError):
    """A setting is missing or malformed (bad DATABASE_URL, unknown APP_ENV, ...)."""

    exit_code = 2


class EnvironmentRefusedError(DatabaseSetupError):
    """The current APP_ENV does not allow the action (for example a reset in production)."""

    exit_code = 3


class MarkerRefusedError(DatabaseSetupError):
    """The database's environment marker forbids the action."""

    exit_code = 4


class NotConfirmedError(DatabaseSetupError):
    """The user declined, or could not be asked (no terminal and no --yes)."""

    exit_code = 5


class ConnectionFailedError(DatabaseSetupError):
    """The server could not be reached, or the database does not exist."""

    exit_code = 6


class AuthenticationFailedError(DatabaseSetupError):
    """The server rejected the user name or password."""

    exit_code = 7


class ServerRefusedError(DatabaseSetupError):
    """The server refused a statement: a missing privilege, a conflicting object, ..."""

    exit_code = 11

    @classmethod
    def from_server(cls, exc: BaseException) -> ServerRefusedError:
        """One line from a server error: its SQLSTATE, message and hint, nothing else."""
        error: Any = getattr(exc, "orig", None) or exc
        error = getattr(error, "__cause__", None) or error
        message = str(getattr(error, "message", None) or error).strip().splitlines()
        text = message[0] if message else type(error).__name__
        hint = getattr(error, "hint", None)
        sqlstate = getattr(error, "sqlstate", None)
        code = f" [{sqlstate}]" if sqlstate else ""
        return cls(f"the server refused{code}: {text}" + (f" (hint: {hint})" if hint else ""))
