"""The benchmarks' scratch databases live on the configured server, beside the real ones."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import URL

from app.db.embedded import database_url
from app.db.engine import connect, create_engine
from app.db.reset import init_db
from app.db.settings import PROJECT_ROOT, Environment, load_settings


async def admin(url: URL, sql: str) -> None:
    """Run `sql` (CREATE/DROP DATABASE) from the server's `postgres` database."""
    conn = await connect(url.set(database="postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def initialized_database(prefix: str) -> AsyncIterator[URL]:
    """A new database at the newest schema (`init_db`) on the configured server (the
    embedded one, or DATABASE_URL's), dropped afterwards."""
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    url = base.set(database=f"{prefix}_{uuid.uuid4().hex[:8]}")
    await admin(base, f'CREATE DATABASE "{url.database}"')
    try:
        engine = create_engine(url, null_pool=True)
        await init_db(engine, environment=Environment.TEST)
        await engine.dispose()
        yield url
    finally:
        await admin(base, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


async def exists(server: URL, database: str | None) -> bool:
    conn = await connect(server)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
    finally:
        await conn.close()
    return found is not None


async def build_template(url: URL, rows: int) -> None:
    """A new database `url` at the baseline revision, data_collection_logs filled with
    `rows` rows (about 9 minutes for 20M here)."""
    await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    await admin(url, f'CREATE DATABASE "{url.database}"')
    env = {
        **os.environ,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "APP_ENV": "development",
    }
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "alembic", "upgrade", "3f9c1a2b7d10"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    conn = await connect(url)
    try:
        await conn.execute(
            "INSERT INTO analysts (email, name) SELECT 'b' || g || '@x', 'B'"
            " FROM generate_series(1, 100) g"
        )
        await conn.execute(
            "WITH a AS (SELECT array_agg(id ORDER BY email) AS ids FROM analysts)"
            " INSERT INTO data_collection_logs (analyst_id, collection_type, status,"
            " records_collected, message, started_at, completed_at)"
            " SELECT a.ids[1 + g % 100], 'news', 'success', g % 1000, 'collected ' || g,"
            f" now(), now() FROM a, generate_series(1, {rows}) g"
        )
        await conn.execute("VACUUM ANALYZE data_collection_logs")
    finally:
        await conn.close()


async def migrate_with_alembic(url: URL) -> None:
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    env["APP_ENV"] = Environment.DEVELOPMENT.value
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "upgrade",
        "head",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_DEBUG") else asyncio.subprocess.DEVNULL,
    )
    if await proc.wait() != 0:
        raise RuntimeError("alembic upgrade head failed")
