"""The dashboard's pages, fragments and forms. Server-rendered (Jinja2, every value
escaped), one small vendored script for the live parts, no build step and no CDN. Every
URL is made by the router (`url_for`), so it works under any prefix and behind a proxy.

Writes go through the job service, as the API's do, with the same `Access` resolver; a
form must carry the caller's CSRF token (`csrf.py`). Refreshes that tabs make by
themselves read through `Shared`, so open tabs share one read.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select

from app.db.engine import session_scope
from app.models import CollectionType, JobStatus
from app.services import collection_jobs as jobs
from app.services.collection_jobs.common import JOBS
from app.web import queries
from app.web.access import Access, Action, full_access
from app.web.actions import JOB_ACTIONS, act_on_job, require
from app.web.api import API_NAME
from app.web.dashboard import charts, csrf
from app.web.dashboard.reads import Shared, analyst_names, attention, pickup_per_minute
from app.web.problems import ProblemError, ProblemRoute, forbidden
from app.web.state import WebState, web_state
from app.worker.runtime import WorkerSettings

NAME = "collection_jobs_dashboard."
PAGE = 50
BULK_CAP = 1000
"""The most jobs one action on a filter takes: a bigger one must be narrowed first."""
STREAM_FILTERS = {"analyst_id", "status", "collection_type"}
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

_templates = Environment(
    loader=PackageLoader("app.web.dashboard", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _day(value: date | None, end: bool = False) -> datetime | None:
    """A form's date as the UTC day's start (or, for an upper bound, the next day's)."""
    if value is None:
        return None
    day = datetime.combine(value, time(), tzinfo=UTC)
    return day + timedelta(days=1) if end else day


class Filters:
    """The jobs page's filters, as its form and its links carry them."""

    def __init__(
        self,
        analyst_id: uuid.UUID | None = None,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        collection_type: CollectionType | None = None,
        created_from: date | None = None,
        created_to: date | None = None,
    ) -> None:
        self.analyst_id, self.status, self.collection_type = analyst_id, status, collection_type
        self.created_from, self.created_to = created_from, created_to

    def selection(self, access: Access) -> jobs.JobSelection:
        return queries.scoped(
            jobs.JobSelection(
                analyst_id=self.analyst_id,
                statuses=self.status,
                collection_type=self.collection_type,
                created_after=_day(self.created_from),
                created_before=_day(self.created_to, end=True),
            ),
            access,
        )

    def query(self) -> list[tuple[str, str]]:
        pairs = [("status", s.value) for s in self.status or ()]
        for name in ("analyst_id", "collection_type", "created_from", "created_to"):
            value = getattr(self, name)
            if value is not None:
                pairs.append((name, str(value)))
        return pairs

    def key(self) -> tuple[Any, ...]:
        return tuple(self.query())

    def links(self, cursor: str | None, following: str | None) -> dict[str, str]:
        """The query strings the jobs page needs: its events' filter (what the stream
        takes), its rows' refresh, the next page, and the page itself."""
        streamed = [(k, v) for k, v in self.query() if k in STREAM_FILTERS]
        here = self.query() + ([("cursor", cursor)] if cursor else [])
        return {
            "stream_query": urlencode(streamed),
            "rows_query": urlencode(here),
            "next_query": urlencode([*self.query(), ("cursor", following or "")]),
            "filters_query": urlencode(self.query()),
        }


def create_dashboard_router(*, access: Callable[..., Any] = full_access) -> APIRouter:
    """The dashboard's pages at `/`, `/jobs/{id}`, `/workers`, `/queue`, `/attention`.
    Include it beside `create_router()` (whose live events the pages follow), under the
    same prefix, with the same `access`."""
    router = APIRouter(route_class=ProblemRoute, include_in_schema=False)
    shared: Shared[Any] = Shared(ttl=2.0)

    async def read(key: Any, fresh: bool, reader_: Callable[[], Awaitable[Any]]) -> Any:
        """A page load reads afresh; the refreshes tabs make by themselves share one read
        per key a `shared.ttl`."""
        return await reader_() if fresh else await shared.get(key, reader_)

    Grant = Annotated[Access, Depends(access)]
    State = Annotated[WebState, Depends(web_state)]

    def page(request: Request, template: str, grant: Access, /, **context: Any) -> HTMLResponse:
        token = csrf.token(request)

        def url(name: str, /, **params: Any) -> str:
            return str(request.url_for(name, **params).path)

        html = _templates.get_template(template).render(
            request=request,
            url=url,
            page=lambda route, /, **p: url(NAME + route, **p),
            api=lambda route, /, **p: url(API_NAME + route, **p),
            can={a.value: grant.allows(a) for a in Action},
            csrf_token=token,
            statuses=list(JobStatus),
            types=list(CollectionType),
            **context,
        )
        response = HTMLResponse(html)
        csrf.remember(request, response, token)
        return response

    def reader(grant: Access) -> Access:
        if not grant.allows(Action.READ):
            raise forbidden("read")
        return grant

    async def job_rows(
        state: WebState, filters: Filters, grant: Access, cursor: str | None, shared: bool
    ) -> dict[str, Any]:
        selection = filters.selection(grant)
        selection.conditions()  # a bad filter is refused before anything is read

        async def rows() -> dict[str, Any]:
            async with state.sessions() as session:
                listed = await queries.list_jobs(session, selection, PAGE, cursor)
                names = await analyst_names(session, {j.analyst_id for j in listed.items})
            return {"listed": listed, "names": names}

        key = ("jobs", grant.analyst_id, filters.key(), cursor)
        found: dict[str, Any] = await read(key, not shared, rows)
        return found

    async def jobs_view(
        request: Request,
        grant: Access,
        state: WebState,
        filters: Filters,
        cursor: str | None,
        template: str,
    ) -> HTMLResponse:
        """The jobs page, or (`jobs_rows.html`) its rows, which tabs re-fetch by themselves
        and so read through the shared cache."""
        shared = template == "jobs_rows.html"
        rows = await job_rows(state, filters, reader(grant), cursor, shared=shared)
        links = filters.links(cursor, rows["listed"].next_cursor)
        return page(request, template, grant, filters=filters, **rows, **links)

    @router.get("/", response_class=HTMLResponse, name=NAME + "jobs")
    async def jobs_page(
        request: Request,
        grant: Grant,
        state: State,
        filters: Annotated[Filters, Depends()],
        cursor: str | None = None,
    ) -> HTMLResponse:
        return await jobs_view(request, grant, state, filters, cursor, "jobs.html")

    @router.get("/fragments/jobs", response_class=HTMLResponse, name=NAME + "jobs_rows")
    async def jobs_fragment(
        request: Request,
        grant: Grant,
        state: State,
        filters: Annotated[Filters, Depends()],
        cursor: str | None = None,
    ) -> HTMLResponse:
        return await jobs_view(request, grant, state, filters, cursor, "jobs_rows.html")

    async def job_context(
        state: WebState, job_id: uuid.UUID, grant: Access, logs: str | None
    ) -> dict[str, Any]:
        async with state.sessions() as session:
            detail = await queries.job_detail(session, job_id, grant)
            names = await analyst_names(session, [detail.analyst_id])
            log_page = await queries.job_logs(session, job_id, 100, logs)
        return {
            "job": detail,
            "analyst_name": names.get(detail.analyst_id, ""),
            "timeline": charts.timeline(detail.attempts, datetime.now(UTC)),
            "logs": log_page.items,
            "logs_next": log_page.next_cursor,
        }

    @router.get("/jobs/{job_id}", response_class=HTMLResponse, name=NAME + "job")
    async def job_page(
        request: Request, job_id: uuid.UUID, grant: Grant, state: State, logs: str | None = None
    ) -> HTMLResponse:
        context = await job_context(state, job_id, reader(grant), logs)
        return page(request, "job.html", grant, **context)

    @router.get("/fragments/jobs/{job_id}", response_class=HTMLResponse, name=NAME + "job_part")
    async def job_fragment(
        request: Request, job_id: uuid.UUID, grant: Grant, state: State
    ) -> HTMLResponse:
        reader(grant)
        context = await read(
            ("job", grant.analyst_id, job_id),
            False,
            lambda: job_context(state, job_id, grant, None),
        )
        return page(request, "job_part.html", grant, **context)

    async def workers_context(state: WebState, grant: Access, fresh: bool) -> dict[str, Any]:
        async def workers() -> Any:
            async with state.sessions() as session:
                return await queries.workers(session)

        return {
            "workers": await read("workers", fresh, workers),
            "scoped": grant.analyst_id is not None,
        }

    @router.get("/workers", response_class=HTMLResponse, name=NAME + "workers")
    async def workers_page(request: Request, grant: Grant, state: State) -> HTMLResponse:
        return page(
            request, "workers.html", grant, **await workers_context(state, reader(grant), True)
        )

    @router.get("/fragments/workers", response_class=HTMLResponse, name=NAME + "workers_part")
    async def workers_fragment(request: Request, grant: Grant, state: State) -> HTMLResponse:
        context = await workers_context(state, reader(grant), False)
        return page(request, "workers_part.html", grant, **context)

    async def queue_context(state: WebState, fresh: bool) -> dict[str, Any]:
        async def figures() -> Any:
            async with state.sessions() as session:
                return await queries.queue(session), await pickup_per_minute(session)

        queue, pickup = await read("queue", fresh, figures)
        return {
            "queue": queue,
            "finished_chart": charts.finished(queue.finished_per_minute),
            "pickup_chart": charts.pickup(queue.finished_per_minute, pickup),
        }

    @router.get("/queue", response_class=HTMLResponse, name=NAME + "queue")
    async def queue_page(request: Request, grant: Grant, state: State) -> HTMLResponse:
        reader(grant)
        return page(request, "queue.html", grant, **await queue_context(state, True))

    @router.get("/fragments/queue", response_class=HTMLResponse, name=NAME + "queue_part")
    async def queue_fragment(request: Request, grant: Grant, state: State) -> HTMLResponse:
        reader(grant)
        return page(request, "queue_part.html", grant, **await queue_context(state, False))

    async def attention_context(state: WebState, grant: Access, fresh: bool) -> dict[str, Any]:
        defaults = WorkerSettings()

        async def lists() -> Any:
            async with state.sessions() as session:
                return await attention(
                    session,
                    stuck_after=timedelta(seconds=defaults.stuck_after),
                    max_lost=defaults.max_lost_attempts,
                )

        found = await read("attention", fresh, lists)
        sees = grant.sees
        return {
            "stuck": [j for j in found.stuck if sees(j.analyst_id)],
            "rescued": [(j, n) for j, n in found.rescued if sees(j.analyst_id)],
            "edge": [(j, n) for j, n in found.one_from_the_cap if sees(j.analyst_id)],
            "failed": [j for j in found.failed if sees(j.analyst_id)],
            "max_lost": defaults.max_lost_attempts,
            "stuck_after": int(defaults.stuck_after),
        }

    @router.get("/attention", response_class=HTMLResponse, name=NAME + "attention")
    async def attention_page(request: Request, grant: Grant, state: State) -> HTMLResponse:
        context = await attention_context(state, reader(grant), True)
        return page(request, "attention.html", grant, **context)

    @router.get("/fragments/attention", response_class=HTMLResponse, name=NAME + "attention_part")
    async def attention_fragment(request: Request, grant: Grant, state: State) -> HTMLResponse:
        context = await attention_context(state, reader(grant), False)
        return page(request, "attention_part.html", grant, **context)

    @router.post("/jobs/{job_id}/{action}", name=NAME + "act")
    async def act(
        request: Request,
        job_id: uuid.UUID,
        action: Action,
        grant: Grant,
        state: State,
        csrf_token: Annotated[str, Form()] = "",
        keep_progress: Annotated[bool, Form()] = False,
    ) -> Response:
        csrf.check(request, csrf_token)
        await act_on_job(state, grant, action, job_id, keep_progress=keep_progress)
        target = request.url_for(NAME + "job", job_id=job_id).path
        return RedirectResponse(f"{target}?done={action.value}", status_code=303)

    async def matching(
        state: WebState, selection: jobs.JobSelection, action: Action
    ) -> list[uuid.UUID]:
        """Up to BULK_CAP + 1 ids of the jobs the action would move."""
        sources = [s.value for s in jobs.MOVES[action.value].sources]
        statement = (
            select(JOBS.c.id)
            .where(*selection.conditions(), JOBS.c.status.in_(sources))
            .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
            .limit(BULK_CAP + 1)
        )
        async with state.sessions() as session:
            return list((await session.scalars(statement)).all())

    @router.post("/actions/{action}", response_class=HTMLResponse, name=NAME + "bulk")
    async def bulk(
        request: Request,
        action: Action,
        grant: Grant,
        state: State,
        filters: Annotated[Filters, Depends()],
        csrf_token: Annotated[str, Form()] = "",
        confirmed: Annotated[int | None, Form()] = None,
    ) -> HTMLResponse:
        """Without `confirmed`: how many jobs it would take, and a button to confirm that
        number. With it: done, if the count still is what was confirmed."""
        csrf.check(request, csrf_token)
        if action not in JOB_ACTIONS:
            raise forbidden(action.value)
        require(grant, action)
        selection = filters.selection(grant)
        ids = await matching(state, selection, action)
        context: dict[str, Any] = {
            "action": action.value,
            "filters": filters,
            "count": len(ids),
            "cap": BULK_CAP,
        }
        if len(ids) > BULK_CAP or confirmed is None or confirmed != len(ids):
            context["changed"] = confirmed is not None and confirmed != len(ids)
            return page(request, "confirm.html", grant, **context)
        move = {
            Action.CANCEL: jobs.cancel_jobs,
            Action.REQUEUE: jobs.requeue_jobs,
            Action.RETRY: jobs.retry_jobs,
        }[action]
        async with session_scope(state.sessions) as session:
            moved = await move(session, jobs.JobSelection(job_ids=ids, analyst_id=grant.analyst_id))
        return page(request, "done.html", grant, **context, moved=len(moved))

    @router.get("/static/{name}", name=NAME + "static")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise ProblemError(404, "Not found", f"no file {name!r}")
        body = files("app.web.dashboard").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    return router
