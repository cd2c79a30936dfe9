"""Expected failures of the data layer, each with the exit code its command-line tools use."""

from __future__ import annotations


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
