"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
uvicorn and a real worker: the pages load without a console error, a running job's bars
move with no reload, and cancel from the page stops the job's collectors within a second;
at the root and under a prefix. Each test saves its screenshots."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.testing.databases import CloneFactory
from app.worker.runtime import Worker
from tests.helpers.browser import screenshot_folder
from tests.helpers.web import job_request, new_analyst, web_server
from tests.helpers.workers import FAST, start_worker, started, working
from tests.worker_collectors import FOREVER, STOPPED_AT

PREFIXES = ["", "/platform/collection"]


async def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A new tab on `url`, and the console errors and page errors it sees."""
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    return page, problems


async def bar_width(page: Any, job_id: str, collection_type: str) -> float:
    selector = f'[data-job="{job_id}"] [data-type="{collection_type}"] .fill'
    style = await page.get_attribute(selector, "style")
    return float(style.split("width:")[1].strip().rstrip("%;").strip())


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_every_page_loads_without_a_console_error(
    prefix: str, browser: Any, database_of_its_own: CloneFactory, tmp_path: Path
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    shots = screenshot_folder(tmp_path)
    async with web_server(url, prefix=prefix) as base, httpx.AsyncClient() as client:
        job = (await client.post(f"{base}/api/jobs", json=job_request(analyst))).json()
        for name, path in [
            ("jobs", "/"),
            ("job", f"/jobs/{job['id']}"),
            ("workers", "/workers"),
            ("queue", "/queue"),
            ("attention", "/attention"),
        ]:
            page, problems = await open_page(browser, base + path)
            if name in {"jobs", "job", "queue"}:  # pages that follow the stream
                await page.wait_for_selector('#live-state[data-state="live"]', timeout=10_000)
            await page.screenshot(path=str(shots / f"{name}{prefix.replace('/', '-')}.png"))
            assert problems == [], (path, problems)
            await page.close()


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_running_jobs_bars_move_without_a_reload(
    prefix: str, browser: Any, database_of_its_own: CloneFactory, tmp_path: Path
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with web_server(url, prefix=prefix) as base, httpx.AsyncClient() as client:
        for types in (["news"], ["disclosure"]):  # company on the page
            await client.post(f"{base}/api/jobs", json=job_request(analyst, types, days=5))
        job = (await client.post(f"{base}/api/jobs", json=job_request(analyst))).json()
        jobs_page, problems = await open_page(browser, base + "/")
        job_page, job_problems = await open_page(browser, f"{base}/jobs/{job['id']}")
        for page in (jobs_page, job_page):
            await page.wait_for_selector('#live-state[data-state="live"]', timeout=10_000)
            await page.evaluate("window.notReloaded = true")
        shots = screenshot_folder(tmp_path)
        worker = start_worker(url, env={"COLLECTOR_STEP_SECONDS": "0.4"})
        try:
            await started(worker)
            seen: dict[str, list[float]] = {"jobs": [], "job": []}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for name, page in (("jobs", jobs_page), ("job", job_page)):
                    width = await bar_width(page, job["id"], "news")
                    if not seen[name] or seen[name][-1] != width:
                        seen[name].append(width)
                        if name == "jobs" and 40 <= width <= 60:  # the README's picture
                            await page.screenshot(path=str(shots / "jobs-running.png"))
                if all(s and s[-1] == 100.0 for s in seen.values()):
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        for name, widths in seen.items():
            assert widths == sorted(widths) and widths[-1] == 100.0, (name, widths)
            assert len(widths) >= 4, (name, widths)  # moved step by step, live
        for page in (jobs_page, job_page):
            assert await page.evaluate("window.notReloaded") is True
        await job_page.wait_for_selector('[data-field="status"]:text("completed")')
        await job_page.wait_for_selector(".outcome.completed", timeout=10_000)  # refreshed
        await job_page.screenshot(path=str(shots / "job-completed.png"))
        assert problems == [] and job_problems == []


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_cancel_from_the_page_stops_the_collectors_within_a_second(
    prefix: str, browser: Any, database_of_its_own: CloneFactory, tmp_path: Path
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with web_server(url, prefix=prefix) as base, httpx.AsyncClient() as client:
        job = (await client.post(f"{base}/api/jobs", json=job_request(analyst, ["news"]))).json()
        async with working(Worker(url, FOREVER, FAST)):
            page, problems = await open_page(browser, f"{base}/jobs/{job['id']}")
            await page.wait_for_selector('[data-field="status"]:text("running")', timeout=15_000)
            await page.wait_for_selector('button[data-action="cancel"]', timeout=10_000)
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            clicked = time.monotonic()
            await page.click('button[data-action="cancel"]')
            job_id = uuid.UUID(job["id"])
            for _ in range(100):
                if job_id in STOPPED_AT:
                    break
                await asyncio.sleep(0.02)
            stopped = STOPPED_AT.get(job_id)
            assert stopped is not None, "the collectors were never stopped"
            assert stopped - clicked < 1.0, stopped - clicked
            await page.wait_for_selector('[data-field="status"]:text("cancelled")')
            await page.screenshot(path=str(screenshot_folder(tmp_path) / "job-cancelled.png"))
            assert problems == []


async def test_a_hidden_tab_pauses_its_stream_and_a_lost_stream_falls_back_to_polling(
    browser: Any, database_of_its_own: CloneFactory
) -> None:
    url = await database_of_its_own()
    await new_analyst(url)
    async with web_server(url) as base:
        page, problems = await open_page(browser, base + "/queue")
        await page.wait_for_selector('#live-state[data-state="live"]', timeout=10_000)
        await page.evaluate(HIDE)
        await page.wait_for_selector('#live-state[data-state="paused"]', timeout=5_000)
        await page.evaluate(SHOW)
        await page.wait_for_selector('#live-state[data-state="live"]', timeout=10_000)
    # The server is gone: the stream is lost, and the page polls (and says so).
    await page.wait_for_selector(
        '#live-state[data-state="polling"], #live-state[data-state="offline"]', timeout=30_000
    )
    assert [p for p in problems if "ERR_CONNECTION_REFUSED" not in p] == []


HIDE = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
