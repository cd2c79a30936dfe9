"""The dashboard's pages and forms in process (httpx's ASGI transport): every URL under the
host's prefix, what a user wrote escaped, actions only with the permission and the
caller's CSRF token, and an action on a filter only for the count that was confirmed."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import Analyst, CollectionJob, JobStatus
from app.services import collection_jobs as jobs
from app.testing.databases import CloneFactory
from app.testing.factories import make_worker
from app.web.dashboard import routes
from tests.helpers.web import api_client, job_request, new_analyst, only

EVIL = '<script>alert("x")</script>'
PAGES = ["/", "/queue", "/workers", "/attention"]
LINK = r'(?:href|action|src|data-stream|data-refresh)="(/[^"]*)"'


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def job_states(url: URL) -> dict[str, str]:
    engine = create_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(CollectionJob.id, CollectionJob.status))
            return {str(job_id): str(status) for job_id, status in rows}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("prefix", ["", "/platform/collection"])
async def test_every_page_renders_with_its_urls_under_the_prefix(
    database_of_its_own: CloneFactory, prefix: str
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with api_client(url, prefix) as client:
        job = (await client.post("/api/jobs", json=job_request(analyst))).json()
        for path in [*PAGES, f"/jobs/{job['id']}", "/fragments/jobs", "/fragments/queue"]:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            links = re.findall(
                r'(?:href|action|src|data-stream|data-refresh)="(/[^"]*)"', response.text
            )
            outside = [link for link in links if not link.startswith(prefix + "/")]
            assert not outside, (path, outside)
        page = await client.get("/")
        assert f'data-job="{job["id"]}"' in page.text
        assert 'data-type="news"' in page.text and 'data-type="disclosure"' in page.text
        assert f'data-stream="{prefix}/api/events"' in page.text
        script = await client.get("/static/dashboard.js")
        assert script.status_code == 200 and "EventSource" in script.text
        assert (await client.get("/static/../pyproject.toml")).status_code == 404


async def test_what_users_wrote_is_escaped_everywhere(database_of_its_own: CloneFactory) -> None:
    url = await database_of_its_own()
    engine = create_engine(url, null_pool=True)
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as session:
            analyst = Analyst(email="evil@example.com", name=EVIL)
            session.add(analyst)
            await session.flush()
            job = await jobs.create_job(session, **_job(analyst.id))
            worker = await jobs.register_worker(session, EVIL)
            claimed = await jobs.start_job(session, job.id, worker_id=worker)
            await jobs.add_job_logs(session, job.id, [jobs.LogEntry("news", "failed", 0, EVIL)])
            await jobs.fail_run(session, claimed.run, EVIL)
    finally:
        await engine.dispose()
    async with api_client(url) as client:
        for path in [
            *PAGES,
            f"/jobs/{job.id}",
            "/fragments/attention",
            f"/fragments/jobs/{job.id}",
        ]:
            text = (await client.get(path)).text
            assert "<script>alert" not in text, path
        detail = (await client.get(f"/jobs/{job.id}")).text
        assert detail.count("&lt;script&gt;alert") >= 3  # name, worker, log, error
        assert "&lt;script&gt;alert" in (await client.get("/")).text
        assert "&lt;script&gt;alert" in (await client.get("/attention")).text


def _job(analyst_id: uuid.UUID) -> dict[str, Any]:
    request = job_request(analyst_id)
    return {
        "analyst_id": analyst_id,
        "collection_types": request["collection_types"],
        "start_date": datetime.fromisoformat(request["start_date"]),
        "end_date": datetime.fromisoformat(request["end_date"]),
    }


async def test_actions_need_the_permission_and_the_callers_token(
    database_of_its_own: CloneFactory,
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with api_client(url, access=only({"read"})) as reader:
        job_id = None
        async with api_client(url) as full:
            job_id = (await full.post("/api/jobs", json=job_request(analyst))).json()["id"]
            page = await full.get(f"/jobs/{job_id}")
            assert 'data-action="cancel"' in page.text
            token = csrf_of(page)
            cookies = dict(full.cookies)
            for wrong in ({}, {"csrf_token": "forged"}):
                refused = await full.post(f"/jobs/{job_id}/cancel", data=wrong)
                assert refused.status_code == 403
            cross = await full.post(
                f"/jobs/{job_id}/cancel",
                data={"csrf_token": token},
                headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"},
            )
            assert cross.status_code == 403
            assert (await job_states(url))[job_id] == "pending"

        page = await reader.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "data-action=" not in page.text
        assert "data-action=" not in (await reader.get("/")).text
        reader.cookies.update(cookies)
        refused = await reader.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
        assert refused.status_code == 403
        assert (await job_states(url))[job_id] == "pending"

    async with api_client(url) as full:
        token = csrf_of(await full.get(f"/jobs/{job_id}"))
        done = await full.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=cancel")
        assert (await job_states(url))[job_id] == "cancelled"


async def test_an_action_on_a_filter_takes_the_count_confirmed_and_no_more_than_the_cap(
    database_of_its_own: CloneFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await database_of_its_own()
    analyst, other = await new_analyst(url), await new_analyst(url)
    async with api_client(url) as client:
        mine = [
            (await client.post("/api/jobs", json=job_request(analyst))).json()["id"]
            for _ in range(3)
        ]
        theirs = (await client.post("/api/jobs", json=job_request(other))).json()["id"]
        page = await client.get("/", params={"analyst_id": str(analyst)})
        token = csrf_of(page)
        assert f'action="/actions/cancel?analyst_id={analyst}"' in page.text
        form = {"csrf_token": token}
        bulk = f"/actions/cancel?analyst_id={analyst}"

        preview = await client.post(bulk, data=form)
        assert preview.status_code == 200
        assert re.search(r'<strong id="count">3</strong>', preview.text)
        assert (await job_states(url))[mine[0]] == "pending"  # a preview writes nothing

        extra = (await client.post("/api/jobs", json=job_request(analyst))).json()["id"]
        stale = await client.post(bulk, data={**form, "confirmed": "3"})
        assert 'id="count">4<' in stale.text and "changed since" in stale.text
        states = await job_states(url)
        assert {states[j] for j in [*mine, extra]} == {"pending"}

        monkeypatch.setattr(routes, "BULK_CAP", 3)
        capped = await client.post(bulk, data={**form, "confirmed": "4"})
        assert "More than 3 jobs match" in capped.text
        assert {states[j] for j in [*mine, extra]} == {"pending"}
        monkeypatch.setattr(routes, "BULK_CAP", 1000)

        done = await client.post(bulk, data={**form, "confirmed": "4"})
        assert '<p id="moved">4 jobs: cancel.</p>' in done.text
        states = await job_states(url)
        assert {states[j] for j in [*mine, extra]} == {"cancelled"}
        assert states[theirs] == "pending"

    async with api_client(url, access=only({"read", "cancel"}, other)) as scoped:
        token = csrf_of(await scoped.get("/"))
        assert (await scoped.post(bulk, data={"csrf_token": token})).status_code == 403


async def test_the_attention_page_lists_stuck_rescued_and_failed_jobs(
    database_of_its_own: CloneFactory,
) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    engine = create_engine(url, null_pool=True)
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as session:
            worker = await make_worker(session, "attention")
            lost = await jobs.create_job(session, **_job(analyst))
            await jobs.start_job(session, lost.id, worker_id=worker)
        async with session_scope(sessions) as session:
            await session.execute(
                text("UPDATE collection_job_attempts SET heartbeat_at = now() - interval '1 hour'")
            )
            assert await jobs.rescue(session, 60, 3) == [lost.id]
            failed = await jobs.create_job(session, **_job(analyst))
            run = (await jobs.start_job(session, failed.id, worker_id=worker)).run
            await jobs.fail_run(session, run, "the source refused")
    finally:
        await engine.dispose()
    async with api_client(url) as client:
        page = (await client.get("/attention")).text
    rescued = page.split("Rescued in the last day")[1].split("</section>")[0]
    assert str(lost.id)[:8] in rescued and "lost 1 time" in rescued
    failed_part = page.split("Failed in the last day")[1]
    assert str(failed.id)[:8] in failed_part and "the source refused" in failed_part
    assert JobStatus.PENDING.value in rescued
