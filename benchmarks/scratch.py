"""The benchmarks' scratch databases live on the configured server, beside the real ones."""

from __future__ import annotations

from sqlalchemy.engine import URL

from app.db.engine import connect


async def admin(url: URL, sql: str) -> None:
    """Run `sql` (CREATE/DROP DATABASE) from the server's `postgres` database."""
    conn = await connect(url.set(database="postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
