"""The JSON API's router: `create_router()`, included by the host under any prefix with
its own `dependencies=` (authentication is the host's), beside `collection_jobs_lifespan`
in the host's lifespan.

Every write is one of the job service's calls (`app.services.collection_jobs`), so what an
operator does here is as safe beside running workers as anything else. Bad input is a 4xx
problem document naming the field; the database out of reach is a 503 with Retry-After.
"""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from app.db.engine import session_scope
from app.models import CollectionType, JobStatus
from app.services import collection_jobs as jobs
from app.web import queries
from app.web.access import Access, Action, full_access
from app.web.actions import act_on_job, require
from app.web.problems import PROBLEM_RESPONSES, ProblemError, ProblemRoute
from app.web.schemas import (
    JobDetail,
    JobPage,
    JobState,
    LogPage,
    QueueState,
    RetryRequest,
    WorkerState,
)
from app.web.state import WebState, web_state
from app.web.streams import job_stream, jobs_stream

API_NAME = "collection_jobs_api."
"""Every route's name begins with it: `request.url_for(API_NAME + "events")` finds a route
under whatever prefix the host gave, and no name clashes with the host's own."""
MAX_PAGE = 200
"""The largest page a listing returns: a page is read and sent at once."""


def create_router(*, access: Callable[..., Any] = full_access) -> APIRouter:
    """The API under `/api`. `access` is a FastAPI dependency that returns the caller's
    `Access` (which actions, and whether only one analyst's jobs); it may depend on the
    host's own dependencies, such as its current user."""
    router = APIRouter(
        prefix="/api",
        route_class=ProblemRoute,
        responses=PROBLEM_RESPONSES,
        tags=["collection jobs"],
    )
    Grant = Annotated[Access, Depends(access)]
    State = Annotated[WebState, Depends(web_state)]
    JobId = Annotated[uuid.UUID, "the job's id"]
    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]

    def reader(grant: Access) -> Access:
        require(grant, Action.READ)
        return grant

    @router.post("/jobs", status_code=201, response_model=JobState, name=API_NAME + "create_job")
    async def create_job(
        request: Annotated[jobs.NewCollectionJob, Body()], grant: Grant, state: State
    ) -> JobState:
        """Start a collection job (pending until a worker claims it)."""
        require(grant, Action.CREATE)
        if not grant.sees(request.analyst_id):
            raise ProblemError(403, "Forbidden", "this caller creates its own jobs only")
        async with session_scope(state.sessions) as session:
            job = await jobs.create_job(
                session,
                analyst_id=request.analyst_id,
                collection_types=request.collection_types,
                start_date=request.start_date,
                end_date=request.end_date,
            )
        return JobState.of(job)

    @router.get("/jobs", response_model=JobPage, name=API_NAME + "list_jobs")
    async def list_jobs(
        grant: Grant,
        state: State,
        analyst_id: uuid.UUID | None = None,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        collection_type: CollectionType | None = None,
        created_after: AwareDatetime | None = None,
        created_before: AwareDatetime | None = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs newest first, filtered, a page at a time (`next_cursor`)."""
        selection = queries.scoped(
            jobs.JobSelection(
                analyst_id=analyst_id,
                statuses=status,
                collection_type=collection_type,
                created_after=created_after,
                created_before=created_before,
            ),
            reader(grant),
        )
        async with state.sessions() as session:
            return await queries.list_jobs(session, selection, limit, cursor)

    @router.get("/jobs/{job_id}", response_model=JobDetail, name=API_NAME + "get_job")
    async def get_job(job_id: JobId, grant: Grant, state: State) -> JobDetail:
        """A job: per-type progress, overall progress, estimated finish, error, attempts."""
        async with state.sessions() as session:
            return await queries.job_detail(session, job_id, reader(grant))

    @router.get("/jobs/{job_id}/logs", response_model=LogPage, name=API_NAME + "job_logs")
    async def job_logs(
        job_id: JobId, grant: Grant, state: State, limit: Limit = 100, cursor: str | None = None
    ) -> LogPage:
        """The job's collection logs, oldest first, a page at a time."""
        async with state.sessions() as session:
            await queries.visible_job(session, job_id, reader(grant))
            return await queries.job_logs(session, job_id, limit, cursor)

    async def act(
        action: Action, job_id: uuid.UUID, grant: Access, state: WebState, keep: bool = False
    ) -> JobState:
        return JobState.of(await act_on_job(state, grant, action, job_id, keep_progress=keep))

    @router.post("/jobs/{job_id}/cancel", response_model=JobState, name=API_NAME + "cancel")
    async def cancel(job_id: JobId, grant: Grant, state: State) -> JobState:
        """Cancel a pending or running job; a running one's worker stops its collectors."""
        return await act(Action.CANCEL, job_id, grant, state)

    @router.post("/jobs/{job_id}/requeue", response_model=JobState, name=API_NAME + "requeue")
    async def requeue(job_id: JobId, grant: Grant, state: State) -> JobState:
        """Put a running job back in the queue with its progress (its worker stops it)."""
        return await act(Action.REQUEUE, job_id, grant, state)

    @router.post("/jobs/{job_id}/retry", response_model=JobState, name=API_NAME + "retry")
    async def retry(
        job_id: JobId,
        grant: Grant,
        state: State,
        options: Annotated[RetryRequest | None, Body()] = None,
    ) -> JobState:
        """Run a failed or cancelled job again, from zero or (`keep_progress`) where it was."""
        keep = (options or RetryRequest()).keep_progress
        return await act(Action.RETRY, job_id, grant, state, keep)

    @router.get("/workers", response_model=list[WorkerState], name=API_NAME + "workers")
    async def list_workers(grant: Grant, state: State) -> list[WorkerState]:
        """Workers not stopped: heartbeat, its age (a dead one's grows) and running jobs."""
        reader(grant)
        async with state.sessions() as session:
            return await queries.workers(session)

    @router.get("/queue", response_model=QueueState, name=API_NAME + "queue")
    async def queue(grant: Grant, state: State) -> QueueState:
        """Counts by status, the oldest pending job's wait, finishes per minute (last hour)."""
        reader(grant)
        async with state.sessions() as session:
            return await queries.queue(session)

    @router.get(
        "/jobs/{job_id}/events",
        name=API_NAME + "job_events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def job_events(job_id: JobId, grant: Grant, state: State) -> StreamingResponse:
        """Server-Sent Events: `job` events with the job's state, the current one first
        (so a reconnect, with or without Last-Event-ID, ends on the latest state)."""
        async with state.sessions() as session:
            first = await queries.visible_job(session, job_id, reader(grant))
        return job_stream(state, first)

    @router.get(
        "/events",
        name=API_NAME + "events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(
        grant: Grant,
        state: State,
        analyst_id: uuid.UUID | None = None,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        collection_type: CollectionType | None = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Server-Sent Events for every job of a filter: a `snapshot` of its pending and
        running jobs first (or, reconnecting with Last-Event-ID, the jobs changed since),
        then a `job` event per change."""
        selection = queries.scoped(
            jobs.JobSelection(
                analyst_id=analyst_id, statuses=status, collection_type=collection_type
            ),
            reader(grant),
        )
        selection.conditions()  # a bad filter is refused before the stream starts
        return jobs_stream(state, selection, last_event_id)

    return router
