"""Settings: URL forms, APP_ENV, and the password never shown."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from app.db.errors import ConfigurationError
from app.db.settings import Environment, Settings, load_settings
from app.db.urls import (
    asyncpg_connect_args,
    describe_url,
    engine_url,
    libpq_env,
    ssl_connect_args,
)
from tests.helpers.tools import assert_secret_hidden

SECRET = "s3cr3t-pw"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states its settings; the suite's own APP_ENV=test must not leak in."""
    for name in ("APP_ENV", "DATABASE_URL", "TEST_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make(**values: str) -> Settings:
    return load_settings(_env_file=None, **values)


@pytest.mark.parametrize(
    "raw",
    [
        f"postgres://app:{SECRET}@db.internal:6432/platform",
        f"postgresql://app:{SECRET}@db.internal:6432/platform",
        f"postgresql+asyncpg://app:{SECRET}@db.internal:6432/platform",
    ],
)
def test_every_accepted_scheme_becomes_asyncpg(raw: str) -> None:
    url = make(database_url=raw, app_env="staging").url()
    assert url is not None
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "db.internal",
        6432,
        "platform",
    )
    assert url.password == SECRET


def test_unix_socket_host_in_query_is_kept() -> None:
    url = make(database_url="postgresql://app@/platform?host=/var/run/postgresql").url()
    assert url is not None
    assert url.query["host"] == "/var/run/postgresql"
    assert "/var/run/postgresql" in describe_url(url)


def test_sslmode_reaches_asyncpg_and_libpq() -> None:
    url = make(database_url="postgresql://app@db/platform?sslmode=require").url()
    assert url is not None
    assert ssl_connect_args(url) == {"ssl": "require"}
    assert asyncpg_connect_args(url)["ssl"] == "require"
    assert dict(engine_url(url).query) == {}  # SQLAlchemy would pass it on as a kwarg
    assert libpq_env(url, connect_timeout=10)["PGSSLMODE"] == "require"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"mysql://app:{SECRET}@db/platform", "must start with one of postgres://"),
        (f"postgresql+psycopg2://app:{SECRET}@db/platform", r"got postgresql\+psycopg2://"),
        (f"not a url {SECRET}", "not a valid URL"),
        (f"postgresql://app:{SECRET}@db", "names no database"),
        # A password with a character that ends its part would be split into the host, the
        # database or the query, and printed as such.
        ("postgresql://user:First@Half-7q@host/db", "ambiguous.*percent-encode"),
        ("postgresql://user:First/Half-7q@host/db", "ambiguous"),
        ("postgresql://user:First?Half-7q@host/db", "ambiguous"),
        ("postgresql://user:First#Half-7q@host/db", "ambiguous"),
        (
            f"postgresql://app:{SECRET}@db/p?connect_timeout=5",
            "use DB_CONNECT_TIMEOUT",
        ),
        (f"postgresql://app:{SECRET}@db/p?application_name=x", "unknown query parameter"),
        (f"postgresql://app:{SECRET}@db/p?sslmode=strict", "unknown sslmode"),
        (f"postgresql://app:{SECRET}@db/p?sslrootcert=/no/such.crt", "needs sslmode=verify"),
        (
            f"postgresql://app:{SECRET}@db/p?sslmode=verify-full&sslrootcert=/no/such.crt",
            "sslrootcert file does not exist",
        ),
        (f"postgresql://app:{SECRET}@db1,db2/p", "several hosts"),
        (f"postgresql://app:{SECRET}@/p?host=/a&host=/b", "more than once"),
        (f"postgresql://app:{SECRET}@/p?host=/a,/b", "several hosts"),
        (f"postgresql://app:{SECRET}@db:99999/p", "port outside"),
        (f"postgresql://app:{SECRET}@db:port/p", "not a valid URL"),
        (f"postgresql://app:{SECRET}@/p?port=x", "port that is not a number"),
    ],
)
def test_bad_urls_fail_with_a_message_that_hides_the_password(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        make(database_url=raw)
    assert_secret_hidden(str(caught.value), SECRET)
    assert_secret_hidden(str(caught.value), "First")
    assert_secret_hidden(str(caught.value), "Half-7q")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("password", ["a b c", "x@y/z?w#v%", "p:q", "ünï"])
def test_any_password_works_when_percent_encoded(password: str) -> None:
    url = make(
        database_url=URL.create("postgresql", "app", password, "db", 5432, "p").render_as_string(
            hide_password=False
        )
    ).url()
    assert url is not None and url.password == password
    assert asyncpg_connect_args(url)["password"] == password
    assert libpq_env(url, connect_timeout=10)["PGPASSWORD"] == password


def test_password_is_masked_in_repr_and_description() -> None:
    settings = make(database_url=f"postgresql://app:{SECRET}@db:5432/platform")
    url = settings.url()
    assert url is not None
    assert SECRET not in repr(settings)
    assert SECRET not in repr(url)
    assert describe_url(url) == "database 'platform' on db:5432 as user 'app', password ***"


@pytest.mark.parametrize("raw", ["production", "PRODUCTION", " Test "])
def test_app_env_is_case_insensitive(raw: str) -> None:
    assert make(app_env=raw).environment() == Environment(raw.strip().lower())


def test_unknown_app_env_names_the_allowed_values() -> None:
    with pytest.raises(ConfigurationError) as caught:
        make(app_env="prod")
    assert "APP_ENV must be one of development, test, staging, production" in str(caught.value)


def test_no_url_and_no_env_is_development() -> None:
    assert make().environment() is Environment.DEVELOPMENT


def test_a_url_without_app_env_is_refused() -> None:
    settings = make(database_url="postgresql://app@db/platform")
    with pytest.raises(ConfigurationError, match="set APP_ENV explicitly"):
        settings.environment()


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_DISABLE_PREPARED_STATEMENTS", "true")
    monkeypatch.setenv("DB_POOL_SIZE", "12")
    settings = load_settings(_env_file=None)
    assert settings.db_disable_prepared_statements is True
    assert settings.db_pool_size == 12


def test_a_bad_number_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="DB_POOL_SIZE") as caught:
        load_settings(_env_file=None)
    assert "\n" not in str(caught.value)
