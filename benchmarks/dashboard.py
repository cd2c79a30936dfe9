"""The dashboard's targets (issue 25), in Debian's Chromium driven by Playwright, against
`python -m app.web` (uvicorn) on a scratch database (embedded, or DATABASE_URL's).

    python -m benchmarks.dashboard tabs [--tabs 50] [--seconds 20]
    python -m benchmarks.dashboard paint [--jobs 1000000] [--loads 20]
    python -m benchmarks.dashboard bar [--seconds 20] [--reports-per-second 10]

tabs: the statements per second the web process sends (counted on its engine: the live
rounds, the pages' refreshes, the streams' first reads) while a job reports 20 times a
second and a new job is created every 2 s, with 1 jobs-page tab open, then with --tabs
tabs; prints both and the difference (target: at most 1 more per second). The server
runs in this process (uvicorn), so that its engine can be counted.

paint: the jobs page at --jobs jobs, loaded --loads times in a fresh tab: first
contentful paint (the browser's own figure), p50 and p99.

bar: a job's page open; its progress reported --reports-per-second times a second; from
each report's commit to the bar's width reaching it in the page (a MutationObserver
stamps each change): p50 and p99 (target p99 at most 500 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from playwright.async_api import async_playwright
from sqlalchemy import event
from sqlalchemy.engine import URL

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import CollectionType
from app.services import collection_jobs as jobs
from app.testing.factories import make_analyst, make_claimed_job
from app.web.__main__ import build_app
from benchmarks.scratch import initialized_database
from benchmarks.web_api import fill, free_port, web_server
from tests.helpers.browser import CHROMIUM_ARGS

CHROMIUM = "/usr/bin/chromium"


def quantiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49]:.0f} ms  p99 {cuts[98]:.0f} ms  (n={len(samples)})"


async def load(url: URL, seconds: float, rate: float, new_every: float) -> int:
    """A running job reporting `rate` times a second, a new job every `new_every` s;
    how many transactions it made (a report or a creation: one each)."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    async with session_scope(sessions) as session:
        claimed = await make_claimed_job(session, [CollectionType.NEWS])
        analyst = claimed.job.analyst_id
    began = time.monotonic()
    last_new = began
    sent = 0
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            while time.monotonic() - began < seconds:
                sent += 1
                percent = min(99.0, sent * 99.0 / (seconds * rate * 1.1))
                await jobs.report_progress(conn, claimed.job.id, "news", percent)
                if time.monotonic() - last_new >= new_every:
                    last_new = time.monotonic()
                    sent += 1
                    async with session_scope(sessions) as session:
                        await jobs.create_job(
                            session,
                            analyst_id=analyst,
                            collection_types=["news"],
                            start_date=claimed.job.start_date,
                            end_date=claimed.job.end_date,
                        )
                await asyncio.sleep(1 / rate)
    finally:
        await engine.dispose()
    return sent


@contextlib.asynccontextmanager
async def counted_server(url: URL) -> AsyncIterator[tuple[str, list[int]]]:
    """`python -m app.web`'s app served by uvicorn in this process, and a counter of the
    statements its engine sends (the API's, the dashboard's and the live rounds')."""
    app = build_app(url)
    sent = [0]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    for _ in range(200):  # uvicorn offers no event for it
        if server.started:
            break
        await asyncio.sleep(0.05)
    engine = app.state.collection_jobs.engine.sync_engine

    def count(*_args: Any) -> None:
        sent[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    _SERVED[f"http://127.0.0.1:{port}"] = app.state.collection_jobs.live
    try:
        yield f"http://127.0.0.1:{port}", sent
    finally:
        app.state.collection_jobs.live.end_streams()
        server.should_exit = True
        await serving


_SERVED: dict[str, Any] = {}


def live_of(base: str) -> Any:
    return _SERVED[base]


async def tabs(args: argparse.Namespace) -> None:
    async with initialized_database("bench_tabs") as url, counted_server(url) as (base, sent):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            figures = {}
            for count in (1, args.tabs):
                pages = [await browser.new_page() for _ in range(count)]
                for page in pages:
                    await page.goto(base + "/")
                    await page.wait_for_selector('#live-state[data-state="live"]')
                await asyncio.sleep(2)
                live = live_of(base)
                before, rounds, began = sent[0], live.reads, time.monotonic()
                await load(url, args.seconds, 20, 2.0)
                elapsed = time.monotonic() - began
                per_round = (live.reads - rounds) / elapsed
                figures[count] = (sent[0] - before) / elapsed - per_round
                print(
                    f"{count:>3} tab(s): the web process sent {figures[count] + per_round:.2f} "
                    f"statements/s: {per_round:.2f} live rounds (one per 100 ms, however many "
                    f"clients), {figures[count]:.2f} for the pages"
                )
                for page in pages:
                    await page.close()
            await browser.close()
        print(f"{args.tabs} tabs add {figures[args.tabs] - figures[1]:+.2f} statements/s")


async def paint(args: argparse.Namespace) -> None:
    async with initialized_database("bench_paint") as url:
        await fill(url, args.jobs)
        async with web_server(url) as base, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            samples = []
            for _ in range(args.loads):
                page = await browser.new_page()
                await page.goto(base + "/")
                fcp: Any = await page.evaluate(FIRST_PAINT)
                assert fcp is not None, "the browser reported no first contentful paint"
                samples.append(float(fcp))
                await page.close()
            await browser.close()
        print(f"jobs page at {args.jobs:,} jobs, first contentful paint: {quantiles(samples)}")


FIRST_PAINT = """
() => new Promise((resolve) => {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      if (entry.name === "first-contentful-paint") resolve(entry.startTime);
  }).observe({ type: "paint", buffered: true });
  setTimeout(() => resolve(null), 5000);
})
"""

WATCH = """
(jobId) => {
  window.widths = [];
  const fill = document.querySelector(`[data-job="${jobId}"] [data-type="news"] .fill`);
  new MutationObserver(() => window.widths.push([parseFloat(fill.style.width), Date.now()]))
    .observe(fill, { attributes: true, attributeFilter: ["style"] });
}
"""


async def bar(args: argparse.Namespace) -> None:
    async with initialized_database("bench_bar") as url, web_server(url) as base:
        engine = create_engine(url)
        async with session_scope(create_sessionmaker(engine)) as session:
            await make_analyst(session)
            claimed = await make_claimed_job(session, [CollectionType.NEWS])
        job_id = claimed.job.id
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{base}/jobs/{job_id}")
            await page.wait_for_selector('#live-state[data-state="live"]')
            await page.evaluate(WATCH, str(job_id))
            committed: list[tuple[float, float]] = []
            began = time.monotonic()
            sent = 0
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                while time.monotonic() - began < args.seconds:
                    sent += 1
                    percent = round(
                        min(99.0, sent * 99.0 / (args.seconds * args.reports_per_second)), 1
                    )
                    await jobs.report_progress(conn, job_id, "news", percent)
                    committed.append((percent, time.time() * 1000))
                    await asyncio.sleep(1 / args.reports_per_second)
            await asyncio.sleep(1)
            widths: list[list[float]] = await page.evaluate("window.widths")
            await browser.close()
        await engine.dispose()
        latencies = []
        for percent, at in committed:
            shown = next(
                (when for width, when in widths if width >= percent - 1e-6 and when >= at), None
            )
            if shown is not None:
                latencies.append(shown - at)
        print(
            f"report -> bar: {quantiles(latencies)}; {len(committed) - len(latencies)} never shown"
        )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    sub = p.add_subparsers(dest="which", required=True)
    one = sub.add_parser("tabs")
    one.add_argument("--tabs", type=int, default=50)
    one.add_argument("--seconds", type=float, default=20)
    two = sub.add_parser("paint")
    two.add_argument("--jobs", type=int, default=1_000_000)
    two.add_argument("--loads", type=int, default=20)
    three = sub.add_parser("bar")
    three.add_argument("--seconds", type=float, default=20)
    three.add_argument("--reports-per-second", type=float, default=10)
    args = p.parse_args()
    run = {"tabs": tabs, "paint": paint, "bar": bar}[args.which]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
