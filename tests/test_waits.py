"""What long migration steps report about themselves (app.db.migrate.waits)."""

from __future__ import annotations

from app.db.engine import connect
from app.db.migrate.waits import index_build_progress, scan_progress
from tests.conftest import ScratchFactory
from tests.test_migrations import at_baseline_with_logs


async def test_a_scan_reports_its_table_size_rows_and_elapsed_time(
    scratch_db: ScratchFactory,
) -> None:
    url = await at_baseline_with_logs(scratch_db, 3000)
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
