"""The worker's Prometheus metrics: served on --metrics-port while a job runs, counting
what happened to each job; the estimate's error recorded for every completed job; a port
taken or the extra missing is one line before anything is claimed."""

from __future__ import annotations

import asyncio
import signal
import socket
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import URL

from app.worker import Worker
from app.worker.metrics import PrometheusMetrics
from tests.helpers.tools import assert_one_line_error, run_tool, url_env
from tests.helpers.workers import (
    FAST,
    Database,
    start_worker,
    wait_for_progress,
    wait_until_all_completed,
    working,
)
from tests.worker_collectors import BROKEN, FOREVER


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Each sample line of /metrics: `name{labels}` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def scrape_until(
    port: int, name: str, seconds: float = 20, *, then: dict[str, float] | None = None
) -> dict[str, float]:
    """The samples once `name` is above 0 and every sample of `then` has its value (the
    gauges follow within a loop turn of the counters: a scrape may fall between)."""
    samples: dict[str, float] = {}
    for _ in range(int(seconds / 0.1)):
        try:
            samples = await asyncio.to_thread(scrape, port)
            if samples.get(name, 0) > 0 and all(
                samples.get(k) == v for k, v in (then or {}).items()
            ):
                return samples
        except OSError:
            pass  # not serving yet
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never above 0 with {then}: {samples}")


async def test_the_endpoint_shows_a_running_job_then_its_completion(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news", "disclosure"])
    port = free_port()
    slow = {"COLLECTOR_STEP_SECONDS": "0.5"}  # 5 s a type: time to look while it runs
    worker = start_worker(db.url, "--metrics-port", str(port), env=slow)
    try:
        await wait_for_progress(db, job_id, 10)
        running = await scrape_until(port, "collection_worker_running_jobs")
        assert running["collection_worker_running_jobs"] == 1
        assert running["collection_worker_jobs_claimed_total"] == 1
        assert running["collection_worker_pickup_latency_seconds_count"] == 1
        assert running["collection_worker_progress_report_duration_seconds_count"] >= 1
        assert running["collection_worker_jobs_completed_total"] == 0
        assert await wait_until_all_completed(db, 30) == 0
        done = await scrape_until(
            port,
            "collection_worker_jobs_completed_total",
            then={"collection_worker_running_jobs": 0},
        )
        assert done['collection_worker_collect_duration_seconds_count{collection_type="news"}'] == 1
        for percent in ("10", "50", "90"):
            key = f'collection_worker_estimate_error_seconds_count{{progress_percent="{percent}"}}'
            assert done[key] == 1, percent
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output


async def test_cancelled_and_handed_back_jobs_are_counted(db: Database) -> None:
    from app.services import collection_jobs as jobs

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    [cancelled, handed_back] = await db.new_jobs(2, ["news"])
    worker = Worker(db.url, FOREVER, replace(FAST, grace_seconds=0.1), metrics=metrics)
    async with working(worker):
        await wait_for_progress(db, cancelled, 1)
        await wait_for_progress(db, handed_back, 1)
        async with db.sessions() as session, session.begin():
            await jobs.cancel_job(session, cancelled)
        for _ in range(100):
            if registry.get_sample_value("collection_worker_jobs_cancelled_total") == 1:
                break
            await asyncio.sleep(0.05)
    assert registry.get_sample_value("collection_worker_jobs_claimed_total") == 2
    assert registry.get_sample_value("collection_worker_jobs_cancelled_total") == 1
    assert registry.get_sample_value("collection_worker_jobs_requeued_total") == 1
    assert registry.get_sample_value("collection_worker_jobs_completed_total") == 0
    assert registry.get_sample_value("collection_worker_pending_jobs") is not None


def test_a_taken_port_is_one_line_before_anything_is_claimed(
    tmp_path: Path, test_database_url: URL
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_tool(
            "-m", "app.worker", "app.worker.demo:COLLECTORS", "--metrics-port", str(port),
            env=url_env(test_database_url), cwd=Path.cwd(),
        )  # fmt: skip
    assert_one_line_error(result, 2, f"--metrics-port {port}")


def test_without_the_extra_the_flag_says_which_to_install(
    tmp_path: Path, test_database_url: URL
) -> None:
    hidden = tmp_path / "prometheus_client"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('not installed (hidden)')\n")
    result = run_tool(
        "-m", "app.worker", "app.worker.demo:COLLECTORS", "--metrics-port", str(free_port()),
        env={**url_env(test_database_url), "PYTHONPATH": f"{tmp_path}:{Path.cwd()}"},
        cwd=Path.cwd(),
    )  # fmt: skip
    assert_one_line_error(result, 2, "collection-jobs-db[metrics]")


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_port_is_refused(port: str, tmp_path: Path) -> None:
    result = run_tool(
        "-m", "app.worker", "app.worker.demo:COLLECTORS", "--metrics-port", port,
        env={}, cwd=Path.cwd(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--metrics-port" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def test_database_url(db: Database) -> URL:
    return db.url


async def test_failed_rescued_and_the_oldest_heartbeat_are_measured(db: Database) -> None:
    """A job that fails, a gone worker's job rescued, and its silent attempt's heartbeat
    age climbing towards the rescue timeout meanwhile."""
    from app.db.engine import session_scope
    from app.services import collection_jobs as jobs

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    [broken] = await db.new_jobs(1, ["news", "disclosure"])
    [orphan] = await db.new_jobs(1, ["news"])
    async with session_scope(db.sessions) as session:
        gone = await jobs.register_worker(session, "gone")
        await jobs.start_job(session, orphan, worker_id=gone)
    ages: list[float] = []
    worker = Worker(db.url, BROKEN, replace(FAST, rescue_timeout=1.5), metrics=metrics)
    async with working(worker):
        for _ in range(200):
            ages.append(
                registry.get_sample_value("collection_worker_oldest_heartbeat_age_seconds") or 0
            )
            if registry.get_sample_value("collection_worker_jobs_rescued_total") == 1 and (
                registry.get_sample_value("collection_worker_jobs_failed_total") == 1
            ):
                break
            await asyncio.sleep(0.05)
        assert await wait_until_all_completed_or_failed(db, [broken, orphan])
    assert registry.get_sample_value("collection_worker_jobs_failed_total") == 1
    assert registry.get_sample_value("collection_worker_jobs_rescued_total") == 1
    assert max(ages) >= 1.0, ages  # the silent attempt, measured before its rescue


async def wait_until_all_completed_or_failed(db: Database, job_ids: list[uuid.UUID]) -> bool:
    from app.models import JobStatus

    for _ in range(200):
        statuses = {(await db.job(j)).status for j in job_ids}
        if statuses <= {JobStatus.COMPLETED, JobStatus.FAILED}:
            return True
        await asyncio.sleep(0.05)
    return False
