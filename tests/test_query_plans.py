"""The service's queries use the guide's indexes on tables of a realistic shape (EXPLAIN)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CollectionJob, JobStatus
from app.services import collection_jobs as jobs

ANALYSTS, JOBS, LOGS_PER_JOB = 200, 5000, 10


async def fill(session: AsyncSession) -> None:
    """Many analysts, mostly finished jobs (1 % pending, 1 % running), 50,000 logs."""
    await session.execute(
        text(
            "INSERT INTO analysts (email, name) "
            "SELECT 'plan-' || g || '@example.com', 'analyst ' || g "
            "FROM generate_series(1, :n) AS g"
        ),
        {"n": ANALYSTS},
    )
    await session.execute(
        text(
            "WITH a AS (SELECT array_agg(id) AS ids FROM analysts) "
            "INSERT INTO collection_jobs "
            "(analyst_id, collection_types, start_date, end_date, status, started_at, created_at) "
            "SELECT a.ids[1 + g % :analysts], ARRAY['news', 'disclosure'], now(), now(), "
            "CASE g % 100 WHEN 0 THEN 'pending' WHEN 1 THEN 'running' ELSE 'completed' END, "
            "now(), now() - g * interval '1 minute' "
            "FROM a, generate_series(1, :jobs) AS g"
        ),
        {"analysts": ANALYSTS, "jobs": JOBS},
    )
    await session.execute(
        text(
            "INSERT INTO data_collection_logs "
            "(analyst_id, collection_job_id, collection_type, status, records_collected) "
            "SELECT j.analyst_id, j.id, 'news', 'success', g "
            "FROM collection_jobs AS j, generate_series(1, :n) AS g"
        ),
        {"n": LOGS_PER_JOB},
    )
    # Within the test's transaction: the statistics are rolled back with the rows.
    await session.execute(text("ANALYZE analysts, collection_jobs, data_collection_logs"))


def index_names(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        found = {plan["Index Name"]} if "Index Name" in plan else set()
        return found.union(*(index_names(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(index_names(item) for item in plan))
    return set()


def node_types(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        found = {plan["Node Type"]} if "Node Type" in plan else set()
        return found.union(*(node_types(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(node_types(item) for item in plan))
    return set()


async def plans(session: AsyncSession, call: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run `call`, then EXPLAIN each statement it sent, with the same parameters."""
    connection = await session.connection()
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        sent.append((statement, params))

    event.listen(connection.sync_connection, "before_cursor_execute", capture)
    try:
        await call()
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", capture)
    found = []
    for statement, params in sent:
        if "set_config(" in statement:  # a planner setting of the call's: replayed, so
            await connection.exec_driver_sql(statement, params)  # the plans are the call's
            continue
        result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params)
        found.append(result.scalar_one())
    return found


def scans(plan: Any) -> set[tuple[str, str]]:
    """(node type, index or table) of every scan in `plan`, at any depth."""
    if isinstance(plan, dict):
        target = plan.get("Index Name") or plan.get("Relation Name")
        found = {(plan["Node Type"], target)} if "Node Type" in plan and target else set()
        return found.union(*(scans(value) for value in plan.values()))
    if isinstance(plan, list):
        return set().union(*(scans(item) for item in plan))
    return set()


async def indexes_used(session: AsyncSession, call: Callable[[], Awaitable[Any]]) -> set[str]:
    """The indexes the plans of `call`'s statements use."""
    return set().union(*(index_names(plan) for plan in await plans(session, call)))


@pytest.fixture
async def filled(session: AsyncSession) -> AsyncSession:
    await fill(session)
    return session


async def some_job(session: AsyncSession, status: JobStatus) -> CollectionJob:
    statement = select(CollectionJob).where(CollectionJob.status == status).limit(1)
    return (await session.scalars(statement)).one()


async def test_a_jobs_logs_use_the_collection_job_id_index(filled: AsyncSession) -> None:
    job = await some_job(filled, JobStatus.COMPLETED)
    used = await indexes_used(filled, lambda: jobs.list_job_logs(filled, job.id, limit=20))
    assert "idx_data_collection_logs_collection_job_id" in used


async def test_an_analysts_jobs_use_the_analyst_id_index(filled: AsyncSession) -> None:
    job = await some_job(filled, JobStatus.COMPLETED)
    used = await indexes_used(
        filled,
        lambda: jobs.list_analyst_jobs(filled, job.analyst_id, status=JobStatus.COMPLETED),
    )
    # The guide's analyst index, or the API's (analyst, created_at, id) from 2c7e9a4f1b36.
    assert {"idx_collection_jobs_analyst_id", "idx_collection_jobs_analyst_created_at_id"} & used


async def test_claiming_and_stalled_jobs_use_an_index_on_status(filled: AsyncSession) -> None:
    worker = await jobs.register_worker(filled, "plans")
    # The claim takes the partial index of pending jobs where it exists (revision
    # 9b2e5f81c4d3), the guide's status index before it.
    assert {"idx_collection_jobs_status", "idx_collection_jobs_pending_created_at"} & (
        await indexes_used(filled, lambda: jobs.claim_jobs(filled, worker, ["news"], 1))
    )
    assert "idx_collection_jobs_status" in await indexes_used(
        filled, lambda: jobs.list_stalled_jobs(filled, timedelta(minutes=5))
    )


async def test_single_job_writes_find_the_row_by_primary_key(filled: AsyncSession) -> None:
    job = await some_job(filled, JobStatus.RUNNING)
    assert "collection_jobs_pkey" in await indexes_used(
        filled, lambda: jobs.report_progress(filled, job.id, "news", 10)
    )
    assert "collection_jobs_pkey" in await indexes_used(
        filled,
        lambda: jobs.add_job_logs(filled, job.id, [jobs.LogEntry("news", "success", 1)]),
    )
    assert "collection_jobs_pkey" in await indexes_used(
        filled, lambda: jobs.cancel_job(filled, job.id)
    )


async def test_the_workers_claim_reads_a_long_queue_by_its_pending_index(
    filled: AsyncSession,
) -> None:
    """20,000 queued jobs: the claim takes the oldest from the partial index, never reading
    and sorting the whole queue (what made draining a long queue slow)."""
    await filled.execute(
        text(
            "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date)"
            " SELECT (SELECT min(id::text)::uuid FROM analysts), ARRAY['news'], now(), now()"
            " FROM generate_series(1, 20000)"
        )
    )
    await filled.execute(text("ANALYZE collection_jobs"))
    worker = await jobs.register_worker(filled, "plans")
    used = await indexes_used(filled, lambda: jobs.claim_jobs(filled, worker, ["news"], 8))
    assert "idx_collection_jobs_pending_created_at" in used


async def test_the_claim_reads_a_burst_in_index_order_whatever_the_statistics_say(
    filled: AsyncSession,
) -> None:
    """Statistics taken when 1 % of the jobs were pending, then a burst of 20,000 jobs: the
    claim still reads the oldest from the partial index in its order. Left to the planner,
    it expects a few pending rows and gathers and sorts the whole queue on every claim."""
    await filled.execute(
        text(
            "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date)"
            " SELECT (SELECT min(id::text)::uuid FROM analysts), ARRAY['news'], now(), now()"
            " FROM generate_series(1, 20000)"
        )
    )
    worker = await jobs.register_worker(filled, "plans")
    claim, *_reload = await plans(filled, lambda: jobs.claim_jobs(filled, worker, ["news"], 8))
    found = scans(claim)
    assert ("Index Scan", "idx_collection_jobs_pending_created_at") in found, found
    assert ("Tid Scan", "collection_jobs") in found, found  # the UPDATE, by address
    assert not {scan for scan in found if scan[0] in ("Bitmap Heap Scan", "Seq Scan")}, found
    assert {s for s in found if s[0] == "Index Scan"} == {
        ("Index Scan", "idx_collection_jobs_pending_created_at")
    }, found  # and nothing else read through an index of many rows
    assert "JIT" not in json.dumps(claim)  # compiling a plan would cost 200 ms a claim
    # The settings were the claim's alone: the caller's transaction has its own again.
    assert (await filled.execute(text("SHOW enable_sort"))).scalar_one() == "on"
    assert (await filled.execute(text("SHOW jit"))).scalar_one() == "on"


def test_index_names_are_found_at_any_depth() -> None:
    plan = [{"Plan": {"Plans": [{"Index Name": "a"}, {"Plans": [{"Index Name": "b"}]}]}}]
    assert index_names(plan) == {"a", "b"}
    assert index_names([{"Plan": {"Node Type": "Seq Scan"}}]) == set()


@pytest.mark.parametrize("filtered", ["every job", "one analyst", "a status", "a type"])
async def test_the_apis_job_pages_are_index_range_scans_without_a_sort(
    filled: AsyncSession, filtered: str
) -> None:
    """GET /api/jobs, its first page and a deep one: read in (created_at, id) order from an
    index, never every matching job read and sorted (revision 2c7e9a4f1b36)."""
    from app.web import queries

    job = await some_job(filled, JobStatus.COMPLETED)
    if filtered == "one analyst":  # one with many jobs: reading and sorting them all costs
        await filled.execute(
            text(
                "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, "
                "end_date, status, created_at) SELECT :analyst, ARRAY['news'], now(), now(), "
                "'completed', now() - g * interval '1 second' FROM generate_series(1, 5000) g"
            ),
            {"analyst": job.analyst_id},
        )
        await filled.execute(text("ANALYZE collection_jobs"))
    selection = {
        "every job": jobs.JobSelection(),
        "one analyst": jobs.JobSelection(analyst_id=job.analyst_id),
        "a status": jobs.JobSelection(statuses=["completed"]),
        "a type": jobs.JobSelection(collection_type="news"),
    }[filtered]
    first = await queries.list_jobs(filled, selection, 20, None)
    assert first.next_cursor is not None
    for cursor in (None, first.next_cursor):

        async def page(at: str | None = cursor) -> Any:
            return await queries.list_jobs(filled, selection, 20, at)

        [plan] = await plans(filled, page)
        nodes = node_types(plan)
        assert "Seq Scan" not in nodes and "Sort" not in nodes, plan
        assert {
            "idx_collection_jobs_created_at_id",
            "idx_collection_jobs_analyst_created_at_id",
        } & index_names(plan), plan


async def test_the_queues_finishes_per_minute_read_the_last_hours_only(
    filled: AsyncSession,
) -> None:
    from app.web import queries

    used = await indexes_used(filled, lambda: queries.queue(filled))
    assert "idx_collection_jobs_completed_at" in used
