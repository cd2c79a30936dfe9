"""How long writers of data_collection_logs stall while the collection-jobs migration runs.

    python -m benchmarks.migration_lock [--rows 1000000 5000000] [--hold 5]

For each table size: fill data_collection_logs at the baseline revision, then run a steady
writer (one INSERT and one UPDATE of a random row every 2 ms on a fixed schedule; latency
is measured from each write's scheduled time, so time spent waiting counts) while migrating
(a) with the guide's SQL in one transaction and (b) with `alembic upgrade head`; then both
again while another session holds a transaction open on the table for --hold seconds as
the migration starts. Runs on the embedded server (or DATABASE_URL's server), in scratch
databases it drops afterwards.

Each row also says how long the writer waited on a lock, the disk probe's longest flush and
what the writer waited on during its longest stall (benchmarks/writer_stalls.py). With
DATABASE_URL, pass --probe-dir on the server's disk (or the disk column stays empty).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import database_url
from app.db.engine import connect
from app.db.settings import load_settings
from benchmarks.scratch import admin, build_template, migrate_with_alembic
from benchmarks.writer_stalls import Result, measure_action, probe_folder
from tests.helpers.guide import ALTER_LOGS, CREATE_TABLE


async def migrate_with_guide_sql(url: URL) -> None:
    conn = await connect(url)
    try:
        await conn.execute(f"BEGIN;\n{CREATE_TABLE}\n{ALTER_LOGS}\nCOMMIT;")
    finally:
        await conn.close()


async def measure(url: URL, method: str, hold: float, probe: Path | None) -> Result:
    action = migrate_with_guide_sql if method == "guide" else migrate_with_alembic
    return await measure_action(url, lambda: action(url), hold, probe)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--probe-dir", type=Path, help="a folder on the server's disk")
    args = parser.parse_args()
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    probe = probe_folder(settings, args.probe_dir)
    print(f"{'case':<28} {'migration':>10}  {'longest stall':>19}  {'p99':>14}  {'>100ms':>11}")
    for rows in args.rows:
        template = base.set(database=f"bench_template_{rows}")
        await build_template(template, rows)
        for hold in (0.0, args.hold):
            for method in ("guide", "alembic"):
                scratch = base.set(database=f"bench_{method}_{rows}")
                await admin(base, f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')
                await admin(
                    base, f'CREATE DATABASE "{scratch.database}" TEMPLATE "{template.database}"'
                )
                try:
                    result = await measure(scratch, method, hold, probe)
                finally:
                    await admin(base, f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')
                label = f"{rows / 1e6:g}M {method}" + (f" +{hold:.0f}s txn" if hold else "")
                print(result.row(label), flush=True)
        await admin(base, f'DROP DATABASE IF EXISTS "{template.database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
