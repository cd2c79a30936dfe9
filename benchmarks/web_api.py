"""The HTTP API's targets (issue 24), on a scratch database (embedded, or DATABASE_URL's).

    python -m benchmarks.web_api listing [--jobs 1000000] [--requests 400]
    python -m benchmarks.web_api live [--clients 100] [--seconds 20] [--reports-per-second 20]

listing: GET /api/jobs through the app in process (httpx's ASGI transport: the router,
pydantic and the database, no network) on --jobs jobs of 1,000 analysts: first pages of
every job, one analyst's, one status's and one type's, and pages deep in the listing (by
cursor); prints p50/p95/p99 (ms).

live: `python -m app.web` (uvicorn) on 127.0.0.1; one running job whose progress is
reported with the service's `report_progress` (what `ctx.report` sends) --reports-per-second
times a second. First with 1 SSE client, then with --clients clients of /api/jobs/{id}/events:
- report -> event: from a report's commit to the client's event carrying it, p50/p99 (ms),
  the debounce included;
- the database's statements per second (pg_stat_database xact_commit + xact_rollback of the
  database) with 1 and with --clients clients: the same within 10 % is the target;
- at the end the job is completed: each client's last event is held to the final state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.db.engine import connect, create_engine, create_sessionmaker, session_scope
from app.models import CollectionType
from app.services import collection_jobs as jobs
from app.testing.factories import make_claimed_job
from benchmarks.scratch import initialized_database
from tests.helpers.sse import events
from tests.helpers.web import api_client


def quantiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49]:.1f} ms  p95 {cuts[94]:.1f} ms  p99 {cuts[98]:.1f} ms"


async def fill(url: URL, count: int) -> None:
    engine = create_engine(url, null_pool=True)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO analysts (email, name) SELECT 'bench-' || g || '@example.com', "
                "'analyst ' || g FROM generate_series(1, 1000) g"
            )
        )
        await conn.execute(
            text(
                "WITH a AS (SELECT array_agg(id) AS ids FROM analysts) "
                "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date,"
                " status, created_at, completed_at) "
                "SELECT a.ids[1 + g % 1000], CASE g % 3 WHEN 0 THEN ARRAY['news'] "
                "WHEN 1 THEN ARRAY['news', 'disclosure'] ELSE ARRAY['stock_price'] END, "
                "now(), now(), CASE g % 100 WHEN 0 THEN 'pending' WHEN 1 THEN 'running' "
                "WHEN 2 THEN 'failed' ELSE 'completed' END, "
                "now() - g * interval '1 second', now() - g * interval '1 second' "
                "FROM a, generate_series(1, :n) g"
            ),
            {"n": count},
        )
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE collection_jobs"))
    await engine.dispose()


async def listing(args: argparse.Namespace) -> None:
    async with initialized_database("bench_web") as url:
        began = time.monotonic()
        await fill(url, args.jobs)
        print(f"{args.jobs:,} jobs made in {time.monotonic() - began:.0f} s")
        async with api_client(url) as api:
            gc.freeze()  # as `python -m app.web` does once it has started (docs/web.md)
            some = (await api.get("/api/jobs", params={"limit": 1})).json()["items"][0]
            deep = (await api.get("/api/jobs", params={"limit": 200})).json()["next_cursor"]
            for _ in range(20):  # 4,000 jobs in
                page = await api.get("/api/jobs", params={"limit": 200, "cursor": deep})
                deep = page.json()["next_cursor"]
            kinds: dict[str, dict[str, Any]] = {
                "every job": {},
                "one analyst": {"analyst_id": some["analyst_id"]},
                "one status": {"status": "failed"},
                "one type": {"collection_type": "disclosure"},
                "deep page": {"limit": 200, "cursor": deep},
            }
            for name, params in kinds.items():
                samples = []
                for _ in range(args.requests):
                    began = time.perf_counter()
                    response = await api.get("/api/jobs", params=params)
                    samples.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, response.text
                print(f"GET /api/jobs {name:<12} {quantiles(samples)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def web_server(url: URL) -> AsyncIterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "APP_ENV": "test",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.web",
        "--port",
        str(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{base}/api/queue")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def statements(url: URL) -> int:
    conn = await connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def live_round(
    url: URL, base: str, clients: int, seconds: float, rate: float
) -> tuple[list[float], float, int]:
    """Latencies (ms), statements/s, and clients whose last event is the final state."""
    engine = create_engine(url)
    async with session_scope(create_sessionmaker(engine)) as session:
        claimed = await make_claimed_job(session, [CollectionType.NEWS])
    job_id, run = claimed.job.id, claimed.run
    committed: list[tuple[float, float]] = []
    """(percent, when its report committed) of every report not yet seen by client 0."""
    latencies: list[float] = []
    last: list[dict[str, Any]] = [{} for _ in range(clients)]
    connected = [asyncio.Event() for _ in range(clients)]

    async def client(n: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"{base}/api/jobs/{job_id}/events") as response:
            connected[n].set()
            async for event in events(response):
                if event.kind != "job":
                    continue
                last[n] = event.data
                if n == 0:  # every report this event shows, each from its own commit
                    now, shown = time.perf_counter(), event.data["progress"]["news"]
                    while committed and committed[0][0] <= shown:
                        latencies.append((now - committed.pop(0)[1]) * 1000)

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(timeout=None, limits=limits) as http:
        readers = [asyncio.create_task(client(n, http)) for n in range(clients)]
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), 60)
        await asyncio.sleep(1)
        before = await statements(url)
        began = time.monotonic()
        sent = 0
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            while time.monotonic() - began < seconds:
                sent += 1
                percent = min(99.0, sent * 99.0 / (seconds * rate))
                await jobs.report_progress(
                    conn, job_id, "news", percent, run_started_at=run.started_at
                )
                committed.append((percent, time.perf_counter()))
                await asyncio.sleep(1 / rate)
            elapsed = time.monotonic() - began
            rate_seen = (await statements(url) - before) / elapsed
            await jobs.complete_run(conn, run)
        final = await wait_for_final(last, 10)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    await engine.dispose()
    return latencies, rate_seen, final


async def wait_for_final(last: list[dict[str, Any]], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(s.get("status") == "completed" for s in last):
            break
        await asyncio.sleep(0.1)
    return sum(
        1 for s in last if s.get("status") == "completed" and s["progress"] == {"news": 100.0}
    )


async def live(args: argparse.Namespace) -> None:
    async with initialized_database("bench_live") as url, web_server(url) as base:
        for clients in (1, args.clients):
            latencies, per_second, final = await live_round(
                url, base, clients, args.seconds, args.reports_per_second
            )
            print(
                f"{clients:>4} SSE client(s): report -> event {quantiles(latencies)}; "
                f"database {per_second:.1f} statements/s; "
                f"{final}/{clients} ended on the final state"
            )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.web_api")
    sub = p.add_subparsers(dest="which", required=True)
    one = sub.add_parser("listing")
    one.add_argument("--jobs", type=int, default=1_000_000)
    one.add_argument("--requests", type=int, default=400)
    two = sub.add_parser("live")
    two.add_argument("--clients", type=int, default=100)
    two.add_argument("--seconds", type=float, default=20)
    two.add_argument("--reports-per-second", type=float, default=20)
    args = p.parse_args()
    asyncio.run(listing(args) if args.which == "listing" else live(args))


if __name__ == "__main__":
    main()
