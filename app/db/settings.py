"""Settings read from the environment and `.env`, validated once, password kept secret."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from app.db.errors import ConfigurationError
from app.db.urls import parse_database_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (scripts, docs, tests); for an installed copy, the folder it is installed in."""
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()
DEFAULT_PGDATA = (PROJECT_ROOT if IN_CHECKOUT else Path.cwd()) / ".pgdata"
"""The embedded server's data: in the checkout; for an installed copy, in the folder the
command runs from (never inside site-packages)."""
DEFAULT_LOCK_RETRY_SECONDS = 300.0
"""How long a migration step that blocks writers keeps retrying by default: long enough
to ride out an incident's long transaction, each attempt still bounded by lock_timeout."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


RESETTABLE_ENVIRONMENTS = frozenset({Environment.DEVELOPMENT, Environment.TEST})
"""Environments whose databases `init_db` may wipe; never staging or production."""


class Settings(BaseSettings):
    """Everything the data layer reads from the environment (or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    database_url: SecretStr | None = None
    """Target database; unset means the embedded server (development and test only)."""
    worker_listen_url: SecretStr | None = None
    """A direct URL for the worker's LISTEN connection alone, when DATABASE_URL goes
    through PgBouncer in transaction mode (which cannot pass LISTEN on)."""
    test_database_url: SecretStr | None = None
    """Server the test suite uses instead of the embedded one; the tests own that database."""
    app_env: Environment | None = None
    """development, test, staging or production; required whenever DATABASE_URL is set."""

    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_connect_timeout: float = Field(default=10.0, gt=0)
    db_echo: bool = False
    db_disable_prepared_statements: bool = False
    """Set behind PgBouncer in transaction mode: asyncpg then keeps no named statements."""
    db_application_name: str = "collection-jobs"
    migration_lock_retry_seconds: float = Field(
        default=DEFAULT_LOCK_RETRY_SECONDS, gt=0, allow_inf_nan=False
    )
    """How long a migration step that blocks writers keeps retrying its short lock."""

    embedded_pgdata: Path = DEFAULT_PGDATA
    """Data folder of the embedded development server (git-ignored); blank is unset."""
    embedded_test_pgdata: Path | None = None
    """Data folder of the embedded test server; unset: in memory (/dev/shm) if there."""
    embedded_test_idle_seconds: float = Field(default=900.0, ge=0, allow_inf_nan=False)
    """An in-memory test server with no client for this long is stopped and its data
    removed (RAM is not for keeping); 0 keeps it until `--test stop`."""

    @field_validator("app_env", mode="before")
    @classmethod
    def _normalise_env(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not value:
                return None
            allowed = [e.value for e in Environment]
            if value not in allowed:
                raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    @field_validator("database_url", "test_database_url", "worker_listen_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedded_pgdata", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        # A blank path would be the working directory: never a data folder by accident.
        return DEFAULT_PGDATA if isinstance(value, str) and not value.strip() else value

    @field_validator("embedded_test_pgdata", mode="before")
    @classmethod
    def _blank_test_folder_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def url(self) -> URL | None:
        """DATABASE_URL in the asyncpg form, or None for the embedded server."""
        if self.database_url is None:
            return None
        return parse_database_url(self.database_url.get_secret_value())

    def listen_url(self) -> URL | None:
        """WORKER_LISTEN_URL in the asyncpg form: a direct URL for LISTEN alone (a
        setting, never an argument: a password on argv is seen by all)."""
        if self.worker_listen_url is None:
            return None
        return parse_database_url(
            self.worker_listen_url.get_secret_value(), setting="WORKER_LISTEN_URL"
        )

    def environment(self) -> Environment:
        """The environment, refusing to guess when a real server is configured.

        No APP_ENV and no DATABASE_URL is local development on the embedded server;
        a DATABASE_URL without APP_ENV could be anything, production included.
        """
        if self.app_env is not None:
            return self.app_env
        if self.database_url is None:
            return Environment.DEVELOPMENT
        raise ConfigurationError(
            "DATABASE_URL is set but APP_ENV is not; set APP_ENV explicitly "
            "(development, test, staging or production)"
        )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation failure into one line without the input."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()} {err['msg']}".replace(
                "Value error, ", ""
            )
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    settings.url()  # fail early on a malformed DATABASE_URL
    return settings
