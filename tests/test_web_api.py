"""The JSON API through httpx's ASGI transport, mounted into a host app at the root and
under a prefix: what it returns, what it refuses (a problem document naming the field,
nothing written) and what it answers with the database out of reach."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import CollectionJob
from app.services import collection_jobs as jobs
from app.testing.databases import CloneFactory
from app.testing.factories import make_worker
from tests.helpers.proxy import proxy_to
from tests.helpers.web import api_client, job_request, new_analyst, only

PREFIXES = ["", "/platform/collection"]


async def count_jobs(url: URL) -> int:
    engine = create_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(CollectionJob)) or 0)
    finally:
        await engine.dispose()


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_read_list_and_act(database_of_its_own: CloneFactory, prefix: str) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with api_client(url, prefix) as api:
        created = await api.post("/api/jobs", json=job_request(analyst))
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["status"] == "pending"
        assert job["progress"] == {"news": 0.0, "disclosure": 0.0}
        assert job["overall_progress"] == 0.0 and job["estimated_completion_time"] is None

        detail = (await api.get(f"/api/jobs/{job['id']}")).json()
        assert detail["attempts"] == [] and detail["id"] == job["id"]
        listed = (await api.get("/api/jobs", params={"analyst_id": str(analyst)})).json()
        assert [j["id"] for j in listed["items"]] == [job["id"]]
        assert listed["next_cursor"] is None

        # A worker claims it and reports: the API shows the attempt and the progress.
        engine = create_engine(url, null_pool=True)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                worker = await make_worker(session, "api-test-worker")
                await jobs.start_job(session, job["id"], worker_id=worker)
                await jobs.report_progress(session, job["id"], "news", 50)
        finally:
            await engine.dispose()
        detail = (await api.get(f"/api/jobs/{job['id']}")).json()
        assert detail["status"] == "running"
        assert detail["progress"] == {"news": 50.0, "disclosure": 0.0}
        assert detail["overall_progress"] == 25.0
        [attempt] = detail["attempts"]
        assert attempt["worker_name"] == "api-test-worker" and attempt["ended_at"] is None

        workers = (await api.get("/api/workers")).json()
        assert [w["running_jobs"] for w in workers] == [[job["id"]]]
        queue = (await api.get("/api/queue")).json()
        assert queue["counts"]["running"] == 1 and queue["counts"]["pending"] == 0
        assert len(queue["finished_per_minute"]) == 60

        requeued = await api.post(f"/api/jobs/{job['id']}/requeue")
        assert requeued.json()["status"] == "pending"
        assert requeued.json()["progress"]["news"] == 50.0  # kept for the next attempt
        cancelled = await api.post(f"/api/jobs/{job['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        problem(await api.post(f"/api/jobs/{job['id']}/cancel"), 409)
        queue = (await api.get("/api/queue")).json()
        assert sum(m["cancelled"] for m in queue["finished_per_minute"]) == 1
        assert queue["counts"]["cancelled"] == 1
        retried = await api.post(f"/api/jobs/{job['id']}/retry", json={"keep_progress": True})
        assert retried.json()["status"] == "pending"
        assert retried.json()["progress"]["news"] == 50.0
        detail = (await api.get(f"/api/jobs/{job['id']}")).json()
        assert [a["outcome"] for a in detail["attempts"]] == ["released"]


async def test_keyset_pages_cover_every_job_once(database_of_its_own: CloneFactory) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    async with api_client(url) as api:
        made = [
            (await api.post("/api/jobs", json=job_request(analyst))).json()["id"] for _ in range(7)
        ]
        await api.post(f"/api/jobs/{made[0]}/cancel")
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 3, "status": ["pending"]}
        while True:
            page = (await api.get("/api/jobs", params=params)).json()
            seen += [j["id"] for j in page["items"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == list(reversed(made[1:]))  # newest first, each once, the filter kept

        first = (await api.get("/api/jobs", params={"limit": 3})).json()
        other = await api.get(
            "/api/jobs", params={"limit": 3, "status": "pending", "cursor": first["next_cursor"]}
        )
        problem(other, 422, "cursor")  # another listing's cursor
        for forged in ("not-a-cursor", "eyJjIjogMX0", "%%%", "e30"):
            problem(await api.get("/api/jobs", params={"cursor": forged}), 422, "cursor")

        logs = await api.get(f"/api/jobs/{made[1]}/logs", params={"cursor": first["next_cursor"]})
        problem(logs, 422, "cursor")
        assert (await api.get(f"/api/jobs/{made[1]}/logs")).json() == {
            "items": [],
            "next_cursor": None,
        }


BAD_READS: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("/api/jobs/not-a-uuid", {}, 422, "job_id"),
    ("/api/jobs/not-a-uuid/logs", {}, 422, "job_id"),
    ("/api/jobs", {"status": "finished"}, 422, "status.0"),
    ("/api/jobs", {"collection_type": "weather"}, 422, "collection_type"),
    ("/api/jobs", {"analyst_id": "42"}, 422, "analyst_id"),
    ("/api/jobs", {"created_after": "2026-01-01T00:00:00"}, 422, "created_after"),
    ("/api/jobs", {"created_after": "yesterday"}, 422, "created_after"),
    (
        "/api/jobs",
        {"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"},
        422,
        "created_before",
    ),
    ("/api/jobs", {"limit": 0}, 422, "limit"),
    ("/api/jobs", {"limit": 1_000_000}, 422, "limit"),
    ("/api/jobs", {"limit": "ten"}, 422, "limit"),
    (f"/api/jobs/{uuid.uuid4()}", {}, 404, None),
    (f"/api/jobs/{uuid.uuid4()}/logs", {}, 404, None),
    ("/api/events", {"status": "finished"}, 422, "status.0"),
    (f"/api/jobs/{uuid.uuid4()}/events", {}, 404, None),
]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_bad_reads_are_problems_naming_the_field(
    database_of_its_own: CloneFactory, prefix: str
) -> None:
    url = await database_of_its_own()
    async with api_client(url, prefix) as api:
        for path, params, status, field in BAD_READS:
            problem(await api.get(path, params=params), status, field)


async def test_bad_writes_are_refused_and_write_nothing(database_of_its_own: CloneFactory) -> None:
    url = await database_of_its_own()
    analyst = await new_analyst(url)
    good = job_request(analyst)
    async with api_client(url) as api:
        pending = (await api.post("/api/jobs", json=good)).json()["id"]
        before = await count_jobs(url)
        bad_bodies: list[tuple[Any, str]] = [
            ({**good, "collection_types": ["weather"]}, "collection_types.0"),
            ({**good, "collection_types": []}, "collection_types"),
            ({**good, "collection_types": ["news", "news"]}, "collection_types"),
            ({**good, "start_date": "2026-11-01T00:00:00"}, "start_date"),
            ({**good, "end_date": "2020-01-01T00:00:00Z"}, "end_date"),
            ({**good, "analyst_id": "nobody"}, "analyst_id"),
            ({**good, "analyst_id": str(uuid.uuid4())}, "analyst_id"),
            ({**good, "surprise": 1}, "surprise"),
            ([good], "body"),
        ]
        for body, field in bad_bodies:
            problem(await api.post("/api/jobs", json=body), 422, field)
        not_json = await api.post(
            "/api/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
        problem(not_json, 400, "body")
        huge = {**good, "padding": "x" * 200_000}
        problem(await api.post("/api/jobs", json=huge), 413)

        async def chunks() -> Any:
            for _ in range(100):
                yield b" " * 4096

        problem(await api.post("/api/jobs", content=chunks()), 413)  # no Content-Length
        problem(await api.post(f"/api/jobs/{pending}/requeue"), 409)  # pending: not running
        problem(await api.post(f"/api/jobs/{pending}/retry"), 409)
        problem(await api.post(f"/api/jobs/{pending}/retry", json={"keep": 1}), 422, "keep")
        problem(await api.post(f"/api/jobs/{uuid.uuid4()}/cancel"), 404)
        assert await count_jobs(url) == before
        detail = (await api.get(f"/api/jobs/{pending}")).json()
        assert detail["status"] == "pending"


async def test_the_hosts_resolver_decides_each_action(database_of_its_own: CloneFactory) -> None:
    url = await database_of_its_own()
    mine, theirs = await new_analyst(url), await new_analyst(url)
    async with api_client(url) as api:
        my_job = (await api.post("/api/jobs", json=job_request(mine))).json()["id"]
        their_job = (await api.post("/api/jobs", json=job_request(theirs))).json()["id"]

    async with api_client(url, access=only({"read"})) as reader:
        assert (await reader.get(f"/api/jobs/{my_job}")).status_code == 200
        for action in ("cancel", "requeue", "retry"):
            problem(await reader.post(f"/api/jobs/{my_job}/{action}"), 403)
        problem(await reader.post("/api/jobs", json=job_request(mine)), 403)
    async with api_client(url, access=only(set())) as nobody:
        problem(await nobody.get("/api/jobs"), 403)
        problem(await nobody.get("/api/queue"), 403)
        problem(await nobody.get(f"/api/jobs/{my_job}/events"), 403)

    async with api_client(url, access=only({"read", "create", "cancel"}, mine)) as analyst:
        listed = (await analyst.get("/api/jobs")).json()
        assert [j["id"] for j in listed["items"]] == [my_job]
        problem(await analyst.get("/api/jobs", params={"analyst_id": str(theirs)}), 403)
        problem(await analyst.get(f"/api/jobs/{their_job}"), 404)
        problem(await analyst.post(f"/api/jobs/{their_job}/cancel"), 404)
        problem(await analyst.post("/api/jobs", json=job_request(theirs)), 403)
        problem(await analyst.post(f"/api/jobs/{my_job}/retry"), 403)
        assert (await analyst.post(f"/api/jobs/{my_job}/cancel")).json()["status"] == "cancelled"
    async with api_client(url) as api:
        assert (await api.get(f"/api/jobs/{their_job}")).json()["status"] == "pending"
        assert await count_jobs(url) == 2


async def test_the_database_out_of_reach_is_503_with_retry_after(
    database_of_its_own: CloneFactory,
) -> None:
    url = await database_of_its_own()
    async with proxy_to(url) as (proxy, through), api_client(through) as api:
        assert (await api.get("/api/queue")).status_code == 200
        proxy.forwarding.clear()  # a dead link: connections stay open, nothing passes
        began = time.monotonic()
        answer = await api.get("/api/jobs")
        body = problem(answer, 503)
        assert answer.headers["retry-after"].isdigit()
        assert time.monotonic() - began < 15
        assert "password" not in answer.text and str(url.password or "@@") not in answer.text
        assert body["detail"] == "the database is out of reach; try again shortly"
        proxy.forwarding.set()


async def test_the_openapi_schema_names_every_response_model(
    database_of_its_own: CloneFactory,
) -> None:
    url = await database_of_its_own()
    async with api_client(url, "/collection") as api:
        schema = (await api.get("http://host/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths) >= {
        "/collection/api/jobs",
        "/collection/api/jobs/{job_id}",
        "/collection/api/jobs/{job_id}/logs",
        "/collection/api/jobs/{job_id}/cancel",
        "/collection/api/jobs/{job_id}/requeue",
        "/collection/api/jobs/{job_id}/retry",
        "/collection/api/workers",
        "/collection/api/queue",
        "/collection/api/events",
        "/collection/api/jobs/{job_id}/events",
    }
    get_job = paths["/collection/api/jobs/{job_id}"]["get"]["responses"]
    assert get_job["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobDetail")
    assert get_job["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")
    assert {"JobState", "JobDetail", "JobPage", "LogPage", "QueueState", "WorkerState"} <= set(
        schema["components"]["schemas"]
    )
