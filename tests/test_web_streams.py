"""Live job states: a real uvicorn on 127.0.0.1 (`python -m app.web`), a real worker
process reporting, and clients that follow a job or every job, directly, under a prefix,
and through PgBouncer in transaction mode (one poll per process instead of LISTEN)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import CollectionType
from app.services import collection_jobs as jobs
from app.testing.databases import CloneFactory
from app.testing.factories import make_claimed_job
from app.web.live import ROUND_TIMEOUT, LiveJobs, Subscriber
from tests.helpers.proxy import proxy_to
from tests.helpers.sse import Event, events
from tests.helpers.tools import assert_one_line_error, run_tool
from tests.helpers.web import job_request, new_analyst, web_server
from tests.helpers.workers import start_worker, started
from tests.test_concurrency import pgbouncer_url  # noqa: F401 - the fixture, shared


async def follow(
    client: httpx.AsyncClient, path: str, job_id: str, headers: dict[str, str] | None = None
) -> list[Event]:
    """The events of a stream until `job_id` is seen completed."""
    seen: list[Event] = []
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events(response):
            seen.append(event)
            states = event.data if event.kind == "snapshot" else [event.data]
            if any(s["id"] == job_id and s["status"] == "completed" for s in states):
                return seen
    raise AssertionError(f"the stream ended first: {seen}")


def assert_followed_live(seen: list[Event], job_id: str) -> None:
    mine = [e.data for e in seen if e.kind == "job" and e.data["id"] == job_id]
    overall = [s["overall_progress"] for s in mine]
    assert overall == sorted(overall), overall  # never backwards
    assert len(set(overall)) >= 3, overall  # seen moving, not only the end
    assert mine[-1]["status"] == "completed"
    assert mine[-1]["progress"] == {"news": 100.0, "disclosure": 100.0}


ROUTES = ["direct", "prefix", "pgbouncer"]


@pytest.mark.parametrize("route", ROUTES)
async def test_clients_follow_a_job_a_real_worker_runs(
    route: str, database_of_its_own: CloneFactory, request: pytest.FixtureRequest
) -> None:
    url = await database_of_its_own()
    served, args, env = url, [], {}
    if route == "pgbouncer":
        served = request.getfixturevalue("pgbouncer_url").set(database=url.database)
        env = {"DB_DISABLE_PREPARED_STATEMENTS": "true"}
    if route == "prefix":
        args = ["--root-path", "/collection"]
    analyst = await new_analyst(url)
    async with (
        web_server(served, *args, env=env) as base,
        httpx.AsyncClient(
            base_url=base + ("/collection" if route == "prefix" else ""), timeout=60
        ) as client,
    ):
        job = (await client.post("/api/jobs", json=job_request(analyst))).json()
        one = asyncio.create_task(follow(client, f"/api/jobs/{job['id']}/events", job["id"]))
        every = [asyncio.create_task(follow(client, "/api/events", job["id"])) for _ in range(5)]
        # A stream of running jobs only: it is told when the job leaves it, completed.
        running = asyncio.create_task(follow(client, "/api/events?status=running", job["id"]))
        await asyncio.sleep(1.0)  # the clients are connected before the work begins
        worker = start_worker(url, env={"COLLECTOR_STEP_SECONDS": "0.3"})
        try:
            await started(worker)
            seen = await asyncio.wait_for(one, 60)
            all_seen = await asyncio.wait_for(asyncio.gather(*every), 60)
            running_seen = await asyncio.wait_for(running, 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        first = seen[0]
        assert first.kind == "job" and first.data["status"] == "pending"  # the current state
        assert_followed_live(seen, job["id"])
        for stream in all_seen:
            assert stream[0].kind == "snapshot"
            assert [s["id"] for s in stream[0].data] == [job["id"]]
            assert_followed_live(stream, job["id"])
        assert running_seen[0].kind == "snapshot" and running_seen[0].data == []  # pending
        assert_followed_live(running_seen, job["id"])

        if route == "direct":  # a reconnect is given what changed since its last event
            again: list[Event] = []
            last_id = all_seen[0][1].id
            assert last_id is not None
            async with client.stream(
                "GET", "/api/events", headers={"Last-Event-ID": last_id}
            ) as response:
                async for event in events(response):
                    again.append(event)
                    break
            assert again[0].kind == "job" and again[0].data["status"] == "completed"
            stale: list[Event] = []
            async with client.stream(
                "GET", "/api/events", headers={"Last-Event-ID": "another-process.5"}
            ) as response:
                async for event in events(response):
                    stale.append(event)
                    break
            assert stale[0].kind == "snapshot" and stale[0].data == []  # nothing active


async def test_a_job_reporting_fast_sends_bounded_events_and_a_slow_client_holds_none_up(
    database_of_its_own: CloneFactory,
) -> None:
    """200 reports in about a second: each client gets at most one event per debounce
    interval, ending on the final state; a client that reads nothing keeps only the
    latest state (no queue grows) and holds the other up in nothing."""
    url = await database_of_its_own()
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    live = LiveJobs(engine, listen_url=url, debounce=0.1)
    await live.start()
    try:
        async with session_scope(sessions) as session:
            claimed = await make_claimed_job(session, [CollectionType.NEWS])
        job_id = claimed.job.id
        reader = live.subscribe(Subscriber(lambda s: True))
        stalled = live.subscribe(Subscriber(lambda s: True))
        got: list[Any] = []

        async def read() -> None:
            while True:
                await reader.wait()
                got.extend(state for _seq, state in reader.take())

        reading = asyncio.create_task(read())
        began = time.monotonic()
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for n in range(1, 201):
                await jobs.report_progress(conn, job_id, "news", n / 2)
                await asyncio.sleep(0.005)
        took = time.monotonic() - began
        await asyncio.sleep(0.5)
        reading.cancel()
        assert got[-1].overall_progress == 100.0
        assert len(got) <= took / live.debounce + 3, (len(got), took)
        [(_seq, latest)] = stalled.take()
        assert latest.overall_progress == 100.0
        # One read a round, however many reports and clients: not one per report.
        assert live.reads <= (time.monotonic() - began) / live.debounce + 3 < 200
    finally:
        await live.close()
        await engine.dispose()


async def test_the_demo_serves_jobs_that_move(database_of_its_own: CloneFactory) -> None:
    """`python -m app.web --demo`: demo collectors run beside the server and demo jobs
    appear and make progress within seconds, for a newcomer to watch."""
    url = await database_of_its_own()
    async with web_server(url, "--demo") as base, httpx.AsyncClient(base_url=base) as client:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            listed = (await client.get("/api/jobs")).json()["items"]
            if any(job["overall_progress"] > 0 for job in listed):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"no demo job moved in 40 s: {listed}")
        page = await client.get("/")
        assert page.status_code == 200 and "data-job=" in page.text


def test_the_demo_refuses_production(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "APP_ENV": "production"}
    result = run_tool("-m", "app.web", "--demo", env=env, cwd=tmp_path)
    assert_one_line_error(result, 2, "--demo writes demo jobs", prefix="web: error: ")


async def test_operator_actions_through_the_api_beside_a_real_worker(
    database_of_its_own: CloneFactory,
) -> None:
    """Requeue, cancel and retry from the API while a worker process runs the job: each
    lands, the worker lets go of the run it lost and claims the job again when it is
    pending, and no state the operator set is overwritten."""
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    worker = start_worker(url, collectors="FOREVER")
    try:
        await started(worker)
        async with web_server(url) as base, httpx.AsyncClient(base_url=base) as client:
            job = (await client.post("/api/jobs", json=job_request(analyst, ["news"]))).json()
            path = f"/api/jobs/{job['id']}"

            async def attempts_when_running(count: int) -> list[str | None]:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    detail = (await client.get(path)).json()
                    if detail["status"] == "running" and len(detail["attempts"]) == count:
                        return [a["outcome"] for a in detail["attempts"]]
                    await asyncio.sleep(0.1)
                raise AssertionError(f"not running with {count} attempts: {detail}")

            assert await attempts_when_running(1) == [None]
            assert (await client.post(f"{path}/requeue")).json()["status"] == "pending"
            assert await attempts_when_running(2) == [None, "released"]
            assert (await client.post(f"{path}/cancel")).json()["status"] == "cancelled"
            retried = await client.post(f"{path}/retry", json={"keep_progress": True})
            assert retried.json()["status"] == "pending"
            assert retried.json()["progress"] == {"news": 5.0}
            assert await attempts_when_running(3) == [None, "cancelled", "released"]
            assert (await client.post(f"{path}/cancel")).json()["status"] == "cancelled"
            await asyncio.sleep(1.0)  # time for the worker to overwrite it, if it would
            detail = (await client.get(path)).json()
            assert detail["status"] == "cancelled"
            assert [a["outcome"] for a in detail["attempts"]] == [
                "cancelled",
                "cancelled",
                "released",
            ]
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0 and "Traceback" not in output, output


def test_a_client_far_behind_is_told_to_start_over_not_queued_without_bound() -> None:
    """A subscriber keeps the latest state per job; past MAILBOX_JOBS distinct jobs it
    drops them all and says so (its stream then sends a fresh snapshot)."""
    from datetime import UTC, datetime

    from app.web.live import MAILBOX_JOBS
    from app.web.schemas import JobState

    now = datetime.now(UTC)

    def state(job_id: uuid.UUID, percent: float) -> JobState:
        return JobState(
            id=job_id,
            analyst_id=job_id,
            collection_types=["news"],
            start_date=now,
            end_date=now,
            status="running",
            progress={"news": percent},
            overall_progress=percent,
            estimated_completion_time=None,
            started_at=now,
            completed_at=None,
            error_message=None,
            created_at=now,
            updated_at=now,
        )

    slow = Subscriber(lambda s: True)
    one = uuid.uuid4()
    for n in range(100):
        slow.offer(n, state(one, n))
    [(seq, latest)] = slow.take()  # a hundred changes of one job: one entry, the last
    assert (seq, latest.overall_progress) == (99, 99.0) and not slow.overflowed
    for n in range(MAILBOX_JOBS + 1):
        slow.offer(n, state(uuid.uuid4(), 1))
    assert slow.overflowed and slow.take() == []


async def test_live_states_ride_out_a_dead_link_and_say_so_once(
    database_of_its_own: CloneFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The link to the database goes silent (nothing passes, nothing closes): the rounds
    give up within ROUND_TIMEOUT, one warning says so, and once it is back the states
    flow again with one line saying that too."""
    url = await database_of_its_own()
    async with proxy_to(url) as (proxy, through):
        engine = create_engine(through, connect_timeout=2)
        live = LiveJobs(engine, listen_url=None, poll_interval=0.2)
        await live.start()
        try:
            direct = create_engine(url, null_pool=True)
            async with session_scope(create_sessionmaker(direct)) as session:
                claimed = await make_claimed_job(session, [CollectionType.NEWS])
            await direct.dispose()
            subscriber = live.subscribe(Subscriber(lambda s: True))
            with caplog.at_level("INFO", logger="app.web.live"):
                proxy.forwarding.clear()
                await asyncio.sleep(ROUND_TIMEOUT * 2 + 1)
                proxy.forwarding.set()
                async with engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await jobs.report_progress(conn, claimed.job.id, "news", 30)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    states = [state for _seq, state in subscriber.take()]
                    if any(s.overall_progress == 30.0 for s in states):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("no state after the link came back")
            messages = [r.getMessage() for r in caplog.records if r.name == "app.web.live"]
            assert sum("paused" in m for m in messages) == 1, messages
            assert sum("resumed" in m for m in messages) == 1, messages
        finally:
            await live.close()
            await engine.dispose()


async def test_a_quiet_stream_sends_a_keep_alive_and_ends_with_the_server(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing to tell for KEEPALIVE_SECONDS a stream sends a comment line (proxies
    close a silent connection), again and again, and ends when the server stops."""
    from app.web import streams

    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.05)
    live = LiveJobs(engine, listen_url=None)

    async def nothing_to_resync() -> Any:
        return
        yield

    chunks = streams._follow(live, Subscriber(lambda s: True), nothing_to_resync)
    async with asyncio.timeout(5):
        assert [await anext(chunks) for _ in range(3)] == [": keep-alive\n\n"] * 3
        live.ending.set()
        assert [chunk async for chunk in chunks] == []
