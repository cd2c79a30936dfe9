"""Database URLs: parsed strictly, never shown with their password, and turned into what
each client takes (SQLAlchemy, asyncpg, libpq's pg_dump and psql).

Parsing refuses anything it would have to guess at: a password with an unencoded `@`, `/`,
`?` or `#` would otherwise be split into the host or the database name and printed as
such. No error message here echoes any part of the URL.
"""

from __future__ import annotations

import math
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.db.errors import ConfigurationError

ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg")
ASYNC_DRIVER = "postgresql+asyncpg"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
QUERY_PARAMETERS = ("host", "port", "sslmode", "sslrootcert")
"""The only query parameters accepted: libpq's names, understood by every client here."""
_SSL_PARAMETERS = ("sslmode", "sslrootcert")


def parse_database_url(raw: str, *, setting: str = "DATABASE_URL") -> URL:
    """Parse a PostgreSQL URL in any accepted form and return its asyncpg form."""
    raw = raw.strip()
    _refuse_ambiguous(raw, setting)
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"{setting} is not a valid URL; expected postgresql://user:password@host:port/database"
        ) from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise ConfigurationError(
            f"{setting} must start with one of "
            f"{', '.join(s + '://' for s in ACCEPTED_SCHEMES)}; got {url.drivername}://"
        )
    if not url.database:
        raise ConfigurationError(f"{setting} names no database (…/database_name)")
    query = _checked_query(dict(url.query), setting)
    if url.host and "," in url.host:
        raise ConfigurationError(f"{setting} names several hosts; give exactly one")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(f"{setting} has a port outside 1-65535")
    return url.set(drivername=ASYNC_DRIVER, query=query)


def as_url(url: URL | str) -> URL:
    """A URL object as given, or a URL string (any accepted form, such as the one
    `python -m app.db.embedded url` prints) parsed and checked like DATABASE_URL."""
    return parse_database_url(url, setting="the URL") if isinstance(url, str) else url


def _refuse_ambiguous(raw: str, setting: str) -> None:
    """Refuse a URL whose user name or password holds characters that end its part."""
    _, sep, rest = raw.partition("://")
    if not sep:
        return  # make_url's own error
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if authority.count("@") > 1 or "@" in tail or "#" in rest:
        raise ConfigurationError(
            f"{setting} is ambiguous: its user name or password holds an unencoded '@', "
            "'/', '?' or '#'; percent-encode them (@ as %40, / as %2F, ? as %3F, # as %23)"
        )


def _checked_query(query: dict[str, str | tuple[str, ...]], setting: str) -> dict[str, str]:
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        hint = " (use DB_CONNECT_TIMEOUT)" if "connect_timeout" in unknown else ""
        raise ConfigurationError(
            f"{setting} has unknown query parameter(s) {', '.join(unknown)}{hint}; "
            f"accepted: {', '.join(QUERY_PARAMETERS)}"
        )
    checked: dict[str, str] = {}
    for key, value in query.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"{setting} gives {key} more than once; give it once")
        checked[key] = value
    if "," in checked.get("host", ""):
        raise ConfigurationError(f"{setting} names several hosts; give exactly one")
    if "port" in checked and not (checked["port"].isdigit() and 0 < int(checked["port"]) < 65536):
        raise ConfigurationError(f"{setting} has a port that is not a number in 1-65535")
    if "sslmode" in checked and checked["sslmode"] not in SSL_MODES:
        modes = ", ".join(SSL_MODES)
        raise ConfigurationError(f"{setting} has an unknown sslmode; use one of {modes}")
    if "sslrootcert" in checked:
        if checked.get("sslmode") not in ("require", "verify-ca", "verify-full"):
            raise ConfigurationError(
                f"{setting}: sslrootcert needs sslmode=verify-ca or verify-full"
            )
        if not Path(checked["sslrootcert"]).is_file():
            raise ConfigurationError(f"{setting}: the sslrootcert file does not exist")
    return checked


def host_and_port(url: URL) -> tuple[str, int]:
    """Where the server is: a host name, an address, or a Unix socket folder."""
    host = url.host or url.query.get("host") or "localhost"
    port = url.port or url.query.get("port") or 5432
    return str(host), int(str(port))


def describe_url(url: URL) -> str:
    """Where a URL points, for people: host, port, database, user; the password masked."""
    host, port = host_and_port(url)
    password = ", password ***" if url.password else ""
    return f"database {url.database!r} on {host}:{port} as user {url.username!r}{password}"


def engine_url(url: URL) -> URL:
    """The URL for SQLAlchemy: TLS settings travel as `ssl_connect_args` instead."""
    return url.difference_update_query(_SSL_PARAMETERS)


def ssl_connect_args(url: URL) -> dict[str, Any]:
    """asyncpg's `ssl` argument for the URL's sslmode and sslrootcert (libpq's meaning)."""
    mode = url.query.get("sslmode")
    rootcert = url.query.get("sslrootcert")
    if mode is None:
        return {}
    if rootcert is None:
        return {"ssl": str(mode)}
    context = ssl.create_default_context(cafile=str(rootcert))
    context.check_hostname = mode == "verify-full"
    return {"ssl": context}


def asyncpg_connect_args(url: URL) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect`: no DSN string, so nothing is re-encoded."""
    host, port = host_and_port(url)
    return {
        "host": host,
        "port": port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
        **ssl_connect_args(url),
    }


def libpq_env(url: URL, *, connect_timeout: float) -> dict[str, str]:
    """libpq's environment for pg_dump or psql: the password never on a command line."""
    host, port = host_and_port(url)
    env = {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGDATABASE": str(url.database),
        # libpq takes whole seconds and treats 1 as 2; never round a bound down to nothing.
        "PGCONNECT_TIMEOUT": str(max(2, math.ceil(connect_timeout))),
    }
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    for key in _SSL_PARAMETERS:
        if key in url.query:
            env[f"PG{key.upper()}"] = str(url.query[key])
    return env


def psql_url(url: URL) -> str:
    """A password-free URL that psql accepts (the embedded server trusts local users)."""
    host, port = host_and_port(url)
    user = quote(url.username or "postgres", safe="")
    database = quote(str(url.database), safe="")
    if host.startswith("/"):
        return f"postgresql://{user}@/{database}?host={quote(host, safe='')}&port={port}"
    netloc = f"[{host}]" if ":" in host else quote(host, safe="")
    return f"postgresql://{user}@{netloc}:{port}/{database}"
