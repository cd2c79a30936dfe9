"""What long migration steps report about themselves (app.db.waits)."""

from __future__ import annotations

from app.db.engine import connect
from app.db.waits import index_build_progress, scan_progress
from tests.conftest import ScratchFactory
from tests.guide import run_script
from tests.test_migrations import BASELINE, alembic


async def test_a_scan_reports_its_table_size_rows_and_elapsed_time(
    scratch_db: ScratchFactory,
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    await run_script(
        url,
        "INSERT INTO analysts (email, name) VALUES ('a@x', 'A');"
        "INSERT INTO data_collection_logs (analyst_id, collection_type, status)"
        " SELECT id, 'news', 'success' FROM analysts, generate_series(1, 3000);"
        "ANALYZE data_collection_logs;",
    )
    conn = await connect(url)
    try:
        line = await scan_progress("data_collection_logs", "validating fk")(conn, 12.4)
        assert line is not None
        assert line.startswith("progress: validating fk: scanning data_collection_logs (")
        assert "~3000 rows), 12s so far" in line
        # No build running for that backend: nothing to say.
        assert await index_build_progress(conn.get_server_pid())(conn, 1.0) is None
    finally:
        await conn.close()
