"""What one call of the job service costs, by where it runs (the figures docs/jobs.md and
docs/benchmarks.md quote).

    python -m benchmarks.service_calls [--calls 500] [--pending 8000]

- create: `create_job` in a session (BEGIN, the statement, COMMIT), on `autocommit(engine)`
  (its pre-ping included) and on a connection of `create_pool` (one round trip).
- claim: `claim_jobs` of 1 and of 8 jobs out of --pending, on a pool connection, on a
  table whose statistics were taken while nothing was pending (a quiet queue, then a
  burst); beside it the same statement left to the planner, as the claim was sent before
  it ran in index order.
Prints p50 and p99 of each. Runs in a scratch database on the embedded server (or
DATABASE_URL's), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from app.db.engine import (
    autocommit,
    connect,
    create_engine,
    create_pool,
    create_sessionmaker,
    session_scope,
)
from app.services import collection_jobs as jobs
from app.services.collection_jobs.runs import _CLAIM_OLDEST
from app.testing.factories import make_pending_job
from benchmarks.scratch import initialized_database
from benchmarks.worker_peers import percentiles


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> str:
    spent: list[float] = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        spent.append(time.perf_counter() - began)
    return percentiles(spent)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--pending", type=int, default=8000)
    args = parser.parse_args()
    async with initialized_database("bench_calls") as url:
        admin_conn = await connect(url)
        analyst = await admin_conn.fetchval(
            "INSERT INTO analysts (email, name) VALUES ('calls@example.com', 'calls') RETURNING id"
        )
        engine = create_engine(url, pool_size=1)
        sessions = create_sessionmaker(engine)
        pool = await create_pool(url, size=1)
        try:

            async def in_session() -> object:
                async with session_scope(sessions) as session:
                    return await make_pending_job(session, analyst)

            async def on_engine() -> object:
                async with autocommit(engine) as conn:
                    return await make_pending_job(conn, analyst)

            async def on_pool() -> object:
                async with pool.acquire() as conn:
                    return await make_pending_job(conn, analyst)

            for name, call in (("session", in_session), ("autocommit(engine)", on_engine)):
                print(f"create, {name:<20} {await timed(args.calls, call)}")
            print(f"create, {'pool connection':<20} {await timed(args.calls, on_pool)}")

            # Statistics of a quiet queue, then a burst of pending jobs.
            await admin_conn.execute("UPDATE collection_jobs SET status = 'cancelled'")
            await admin_conn.execute("ANALYZE collection_jobs")
            now = datetime.now(UTC)
            await admin_conn.execute(
                "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date)"
                " SELECT $1, '{news}', $2, $3 FROM generate_series(1, $4)",
                analyst,
                now - timedelta(days=1),
                now,
                args.pending,
            )
            async with pool.acquire() as conn:
                worker = await jobs.register_worker(conn, "bench")
                for limit in (1, 8):
                    rounds = min(args.calls, args.pending // (4 * limit))  # the queue lasts

                    async def claim(limit: int = limit) -> object:
                        return await jobs.claim_jobs(conn, worker, ["news"], limit)

                    async def planner(limit: int = limit) -> object:
                        values = {"types": ["news"], "limit": limit, "worker": worker}
                        args_ = [values[name] for name in _CLAIM_OLDEST.parameters]
                        return await conn.fetch(_CLAIM_OLDEST.sql, *args_)

                    print(f"claim {limit}, {'in index order':<18} {await timed(rounds, claim)}")
                    print(f"claim {limit}, {'left to planner':<18} {await timed(rounds, planner)}")
        finally:
            await pool.close()
            await engine.dispose()
            await admin_conn.close()


if __name__ == "__main__":
    asyncio.run(main())
