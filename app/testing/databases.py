"""Test databases that scale: one template per schema fingerprint, cheap clones of it.

The template is built once per schema (by `init_db`, exactly as a developer's database is)
and reused by every later run whose models and migrations are unchanged; each pytest-xdist
worker, and each test that needs a database of its own, gets a clone. Everything here
needs only the CREATEDB privilege on the test server.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.schema import CreateIndex, CreateTable

from app.db.engine import connect, create_engine
from app.db.migrate.steps import MIGRATIONS
from app.db.reset.init_db import init_db
from app.db.reset.marker import CREATE_MARKER_SQL
from app.db.settings import Environment

CloneFactory = Callable[[], Awaitable[URL]]
"""Makes a fresh clone of the template and returns its URL."""


@dataclass(frozen=True)
class DatabaseServer:
    admin_url: URL
    """The server's maintenance database (`postgres`), where databases are made."""
    base: str
    """The test database name that every test database's name starts with."""


def worker_name(config: Any) -> str:
    """`gw0`, `gw1`, ... under pytest-xdist; `main` for a serial run (a pytest Config)."""
    return str(getattr(config, "workerinput", {}).get("workerid", "main"))


BASE_MAX_LENGTH = 33
"""The longest base name: the longest name made from it, a template being built
(`<base>_tpl_<16 hex>_b<pid>`), must stay within PostgreSQL's 63 bytes."""
TEMPLATE_LOCK_KEY = 0x636F6C6C_74706C00  # "colltpl": one template build at a time per server


def schema_fingerprint(metadata: MetaData) -> str:
    """What decides the test schema: the models' DDL as `create_all` emits it, the marker
    table's, and every migration file (init_db stamps the newest revision)."""
    digest = hashlib.sha256()
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    for table in metadata.sorted_tables:
        digest.update(str(CreateTable(table).compile(dialect=dialect)).encode())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            digest.update(str(CreateIndex(index).compile(dialect=dialect)).encode())
    digest.update(CREATE_MARKER_SQL.encode())
    for path in (
        sorted(MIGRATIONS.rglob("*.py"))
        + sorted(MIGRATIONS.glob("*.mako"))
        + sorted(MIGRATIONS.glob("*.sql"))
    ):
        digest.update(path.relative_to(MIGRATIONS).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Template:
    name: str
    built: bool
    """False when an existing template with the same fingerprint was reused."""


def template_name(base: str, fingerprint: str) -> str:
    return f"{base}_tpl_{fingerprint}"


async def ensure_template(admin: URL, base: str, metadata: MetaData) -> Template:
    """The template for `metadata`, built if missing; stale templates of `base` dropped.

    Safe when several workers or runs start at once: one builds under an advisory lock
    (held on the server's maintenance database, so every caller sees the same lock), under
    a temporary name renamed when complete; a half-built template is never used.
    """
    name = template_name(base, schema_fingerprint(metadata))
    conn = await connect(admin)
    try:
        if await _is_template(conn, name):
            return Template(name, built=False)
        await conn.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK_KEY)
        try:
            if await _is_template(conn, name):
                return Template(name, built=False)
            # Other fingerprints' templates, and whatever a killed build left behind.
            for stale in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                f"{base}\\_tpl\\_%",
            ):
                await _drop(conn, str(stale[0]))
            building = f"{name}_b{os.getpid()}"
            await conn.execute(f'CREATE DATABASE "{building}"')
            engine = create_engine(admin.set(database=building), null_pool=True)
            try:
                await init_db(engine, environment=Environment.TEST, metadata=metadata)
            finally:
                await engine.dispose()
            await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            await conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
            return Template(name, built=True)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK_KEY)
    finally:
        await conn.close()


async def _is_template(conn: asyncpg.Connection, name: str) -> bool:
    found = await conn.fetchval("SELECT datistemplate FROM pg_database WHERE datname = $1", name)
    return bool(found)


async def _drop(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def clone(admin: URL, template: str, name: str) -> URL:
    """A new database `name` copied from `template` (replacing any leftover of that name),
    with commits that skip the wait for the disk: test data is thrown away anyway.

    How, by what was measured fastest for a small template (docs/benchmarks.md): on a
    server with fsync off (the embedded test server), copying the files (STRATEGY
    FILE_COPY, cloning them on PostgreSQL 18, `file_copy_method = clone`); with fsync on,
    FILE_COPY's two checkpoints cost more than writing the copy to the WAL, PostgreSQL
    15's default. Before 15, TEMPLATE alone copies the files.
    """
    conn = await connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        version = conn.get_server_version().major
        file_copy = version >= 15 and await conn.fetchval("SHOW fsync") == "off"
        cloning = file_copy and version >= 18
        if cloning:
            await conn.execute("SET file_copy_method = clone")
        strategy = " STRATEGY FILE_COPY" if file_copy else ""
        for attempt in range(20):
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
                break
            except asyncpg.ObjectInUseError:  # another clone is being made from it right now
                await asyncio.sleep(0.05 * (attempt + 1))
            except asyncpg.PostgresError:
                if not cloning:
                    raise
                cloning = False  # this filesystem cannot clone files: copy them
                await conn.execute("RESET file_copy_method")
        else:
            raise RuntimeError(f"template {template} stayed busy; could not clone {name}")
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()
    return admin.set(database=name)


async def empty(admin: URL, name: str) -> URL:
    """A new, empty database `name` (replacing any leftover of that name): for migrations
    from nothing."""
    conn = await connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return admin.set(database=name)


async def drop(admin: URL, name: str) -> None:
    conn = await connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class ClonePool:
    """Clones made one ahead, in the background: CREATE DATABASE writes the whole template
    (about 16 MB with its WAL) and is disk-bound, so a test that asks for a database of its
    own gets one that is already there while the next is being made."""

    def __init__(self, admin: URL, template: str, prefix: str) -> None:
        self._admin, self._template, self._prefix = admin, template, prefix
        self._numbers = itertools.count(1)
        self._next: asyncio.Task[URL] | None = None

    def _make(self) -> asyncio.Task[URL]:
        name = f"{self._prefix}_{next(self._numbers)}"
        return asyncio.create_task(clone(self._admin, self._template, name))

    async def take(self) -> URL:
        task = self._next or self._make()
        self._next = self._make()
        return await task

    async def close(self) -> None:
        if self._next is not None:
            url = await self._next
            await drop(self._admin, str(url.database))
            self._next = None
