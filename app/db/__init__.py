"""The data layer's connection core: settings, URLs, engines and sessions, and the errors
every command reports in one line. What the platform imports is listed in `__all__`.

The rest of `app.db` builds on this, one way only:
- `app.db.embedded`: the embedded PostgreSQL for development and tests (optional extra);
- `app.db.migrate`: the migration toolkit (safe operations, steps, autogenerate, checks);
- `app.db.reset`: the guarded development reset (`init_db`), its marker and sample data.
"""

from app.db.engine import (
    autocommit,
    connect,
    create_engine,
    create_sessionmaker,
    engine_from_settings,
    session_scope,
)
from app.db.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    ConnectionFailedError,
    DatabaseSetupError,
    EnvironmentRefusedError,
    MarkerRefusedError,
    NotConfirmedError,
    ServerRefusedError,
)
from app.db.settings import Environment, Settings, load_settings
from app.db.urls import parse_database_url

__all__ = [
    "AuthenticationFailedError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DatabaseSetupError",
    "Environment",
    "EnvironmentRefusedError",
    "MarkerRefusedError",
    "NotConfirmedError",
    "ServerRefusedError",
    "Settings",
    "autocommit",
    "connect",
    "create_engine",
    "create_sessionmaker",
    "engine_from_settings",
    "load_settings",
    "parse_database_url",
    "session_scope",
]
