"""The migration guide's SQL, read from the guide itself so the tests run it exactly as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from app.db.engine import connect
from app.db.migrate.steps import MIGRATIONS
from app.db.settings import PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "spec" / "collection-jobs-migration-guide.ko.md"
BASELINE_SQL = MIGRATIONS / "baseline.sql"


def sql_blocks(path: Path = GUIDE) -> list[str]:
    """Every ```sql block of the guide, in order."""
    return re.findall(r"```sql\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


def block(containing: str) -> str:
    """The one guide SQL block that contains `containing`."""
    found = [b for b in sql_blocks() if containing in b]
    assert len(found) == 1, f"expected one guide block with {containing!r}, found {len(found)}"
    return found[0]


CREATE_TABLE = block("CREATE TABLE collection_jobs")
ALTER_LOGS = block("ADD COLUMN collection_job_id")
CHECK_TABLE = block("information_schema.tables")
CHECK_COLUMN = block("information_schema.columns")
CHECK_INDEXES = block("pg_indexes")
ROLLBACK = block("DROP TABLE IF EXISTS collection_jobs")


async def run_script(url: URL, *scripts: str) -> None:
    """Run SQL scripts as psql would, each statement committed on its own (autocommit)."""
    conn = await connect(url)
    try:
        for script in scripts:
            await conn.execute(script)
    finally:
        await conn.close()


async def fetch(url: URL, query: str) -> list[tuple[Any, ...]]:
    conn = await connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(query)]
    finally:
        await conn.close()
