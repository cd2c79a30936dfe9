"""Bulk logs and keyset-paged listings."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    CollectionJob,
    CollectionType,
    DataCollectionLog,
    JobStatus,
    LogStatus,
)
from app.models.base import TIMESTAMPTZ
from app.services.collection_jobs import inputs as check
from app.services.collection_jobs.common import (
    JOB_STATE,
    JOBS,
    LOGS,
    Executor,
    fetch,
    statement,
)
from app.services.collection_jobs.errors import (
    JobNotFoundError,
    JobValidationError,
    not_this_run,
)

T = TypeVar("T")

MAX_PAGE_SIZE = 1000


# --- Logs and listings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One `data_collection_logs` row for a job; the analyst is the job's."""

    collection_type: CollectionType | str
    status: LogStatus | str
    records_collected: int = 0
    message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


_LOG_COLUMN_TYPES: dict[str, Any] = {
    "collection_type": Text,
    "status": Text,
    "records_collected": Integer,
    "message": Text,
    "started_at": TIMESTAMPTZ,
    "completed_at": TIMESTAMPTZ,
}


def _log_columns(entries: Sequence[LogEntry]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in _LOG_COLUMN_TYPES}
    for index, entry in enumerate(entries):
        where = f"entries[{index}]"
        if not isinstance(entry, LogEntry):
            raise JobValidationError(where, f"must be a LogEntry, not {type(entry).__name__}")
        columns["collection_type"].append(
            check.collection_type(entry.collection_type, f"{where}.collection_type")
        )
        columns["status"].append(
            check.member(LogStatus, entry.status, f"{where}.status", "log status").value
        )
        columns["records_collected"].append(
            check.count(entry.records_collected, f"{where}.records_collected")
        )
        message = entry.message
        columns["message"].append(
            None if message is None else check.clean_text(message, f"{where}.message")
        )
        started = check.optional_aware(entry.started_at, f"{where}.started_at")
        completed = check.optional_aware(entry.completed_at, f"{where}.completed_at")
        if started is not None and completed is not None and completed < started:
            raise JobValidationError(f"{where}.completed_at", "must not be before started_at")
        columns["started_at"].append(started)
        columns["completed_at"].append(completed)
    return columns


_RUN = bindparam("run_started_at", type_=TIMESTAMPTZ)


def _add_logs_statement() -> Any:
    """INSERT ... SELECT from `unnest` of one array per column: any number of rows in one
    statement and one round trip, the analyst taken from the job (no row if it is missing)."""
    rows = (
        func.unnest(
            *(bindparam(name, type_=ARRAY(kind)) for name, kind in _LOG_COLUMN_TYPES.items())
        )
        .table_valued(*_LOG_COLUMN_TYPES)
        .render_derived(name="entry")
    )
    jobs = JOBS.c
    source = (
        select(jobs.analyst_id, jobs.id, *(rows.c[name] for name in _LOG_COLUMN_TYPES))
        .select_from(JOBS.join(rows, true()))
        .where(
            jobs.id == bindparam("job_id", type_=UUID(as_uuid=True)),
            # Every entry of one of the job's types, or no row at all.
            jobs.collection_types.contains(bindparam("collection_type", type_=ARRAY(Text))),
            # Given a run, only while that run is the job's current one.
            or_(
                _RUN.is_(None),
                and_(jobs.status == JobStatus.RUNNING.value, jobs.started_at == _RUN),
            ),
        )
    )
    columns = ["analyst_id", "collection_job_id", *_LOG_COLUMN_TYPES]
    return insert(LOGS).from_select(columns, source).returning(LOGS.c.id)


ADD_LOGS_STATEMENT = _add_logs_statement()
_ADD_LOGS = statement(ADD_LOGS_STATEMENT)


async def add_job_logs(
    db: Executor,
    job_id: uuid.UUID | str,
    entries: Sequence[LogEntry],
    *,
    run_started_at: datetime | None = None,
) -> int:
    """Write many log rows for a job in one statement; returns how many were written.

    Every entry is checked first: one bad entry writes nothing. A worker passes the
    `started_at` its claim returned as `run_started_at`: then the rows are written only
    while that run is the job's current one (`JobNotRunningError` otherwise, nothing
    written), so a superseded run's late logs never land.
    """
    job_id = check.identifier(job_id, "job_id")
    run_started_at = check.optional_aware(run_started_at, "run_started_at")
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise JobValidationError("entries", "must be a sequence of LogEntry")
    if not entries:
        return 0
    columns = _log_columns(entries)
    params = {"job_id": job_id, "run_started_at": run_started_at, **columns}
    # In autocommit mode straight to the driver: compiled once, and no named prepared
    # statement (PgBouncer in transaction mode cannot keep one between two messages).
    written = len(await fetch(db, _ADD_LOGS, params))
    if written == 0:
        found = await fetch(db, JOB_STATE, {"job": job_id})
        if not found:
            raise JobNotFoundError(job_id)
        status, types, started_at = found[0]
        if run_started_at is not None:
            raise not_this_run(job_id, JobStatus(status), started_at, run_started_at, "logs")
        index, wrong = next(
            (i, t) for i, t in enumerate(columns["collection_type"]) if t not in types
        )
        raise JobValidationError(
            f"entries[{index}].collection_type",
            f"{wrong} is not one of this job's types ({', '.join(types)})",
        )
    return written


class Cursor(NamedTuple):
    """Where a page ended: the last item's `created_at` and `id` (ties broken by id), and
    the listing it belongs to (its kind and filter), so that passing it back continues
    that same listing: a cursor of another listing is refused, never silently mixed."""

    created_at: datetime
    id: uuid.UUID
    listing: tuple[str, ...] = ()
    """Set by the service; a cursor built by hand (no listing) is a bare position."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: Cursor | None
    """Pass it back for the next page; None on the last page. `next_page` is simpler."""
    _following: Callable[[AsyncSession, Cursor], Awaitable[Page[T]]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def is_last(self) -> bool:
        return self.next_cursor is None


async def next_page(session: AsyncSession, page: Page[T]) -> Page[T]:
    """The page after `page`, of the same listing with the same filter and size; after
    the last page, an empty last page (never the first page again)."""
    if page.next_cursor is None or page._following is None:
        return Page([], None)
    return await page._following(session, page.next_cursor)


def _page_size(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise JobValidationError("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    return limit


def _cursor(cursor: Cursor | None, field: str, listing: tuple[str, ...]) -> Cursor | None:
    """A checked cursor; one of another listing (`listing[:len(...)]` differs) is refused."""
    if cursor is None:
        return None
    if not isinstance(cursor, Cursor):
        raise JobValidationError(field, "must be a Cursor from a previous page")
    if cursor.listing and cursor.listing != listing:
        raise JobValidationError(
            field, "is the cursor of another listing (another job, analyst or status filter)"
        )
    return Cursor(
        check.aware(cursor.created_at, f"{field}.created_at"),
        check.identifier(cursor.id, f"{field}.id"),
        listing,
    )


def _page(
    rows: Sequence[Any],
    limit: int,
    listing: tuple[str, ...],
    following: Callable[[AsyncSession, Cursor], Awaitable[Page[Any]]],
) -> Page[Any]:
    items = list(rows[:limit])
    if len(rows) <= limit:
        return Page(items, None)
    return Page(items, Cursor(items[-1].created_at, items[-1].id, listing), following)


async def list_job_logs(
    session: AsyncSession,
    job_id: uuid.UUID | str,
    *,
    limit: int = 100,
    after: Cursor | None = None,
) -> Page[DataCollectionLog]:
    """A job's logs, oldest first, a page at a time (index on `collection_job_id`)."""
    job_id = check.identifier(job_id, "job_id")
    limit = _page_size(limit)
    listing = ("logs", str(job_id))
    after = _cursor(after, "after", listing)
    statement = (
        select(DataCollectionLog)
        .where(DataCollectionLog.collection_job_id == job_id)
        .order_by(DataCollectionLog.created_at, DataCollectionLog.id)
        .limit(limit + 1)
    )
    if after is not None:
        statement = statement.where(
            tuple_(DataCollectionLog.created_at, DataCollectionLog.id)
            > tuple_(after.created_at, after.id)
        )

    async def following(session: AsyncSession, cursor: Cursor) -> Page[DataCollectionLog]:
        return await list_job_logs(session, job_id, limit=limit, after=cursor)

    return _page((await session.scalars(statement)).all(), limit, listing, following)


async def list_analyst_jobs(
    session: AsyncSession,
    analyst_id: uuid.UUID | str,
    *,
    status: JobStatus | str | Collection[JobStatus | str] | None = None,
    limit: int = 50,
    before: Cursor | None = None,
) -> Page[CollectionJob]:
    """An analyst's jobs, newest first, optionally of some statuses, a page at a time.

    A cursor from an earlier page carries its status filter: passed back without `status`,
    it continues the same filtered listing; with a different filter it is refused.
    """
    analyst_id = check.identifier(analyst_id, "analyst_id")
    limit = _page_size(limit)
    wanted = _statuses(status)
    if (
        wanted is None
        and isinstance(before, Cursor)
        and before.listing[:2]
        == (
            "jobs",
            str(analyst_id),
        )
    ):
        wanted = list(before.listing[2:]) or None  # the cursor's own filter
    listing = ("jobs", str(analyst_id), *sorted(wanted or ()))
    before = _cursor(before, "before", listing)
    statement = (
        select(CollectionJob)
        .where(CollectionJob.analyst_id == analyst_id)
        .order_by(CollectionJob.created_at.desc(), CollectionJob.id.desc())
        .limit(limit + 1)
    )
    if wanted is not None:
        statement = statement.where(CollectionJob.status.in_(wanted))
    if before is not None:
        statement = statement.where(
            tuple_(CollectionJob.created_at, CollectionJob.id)
            < tuple_(before.created_at, before.id)
        )

    async def following(session: AsyncSession, cursor: Cursor) -> Page[CollectionJob]:
        return await list_analyst_jobs(
            session, analyst_id, status=wanted, limit=limit, before=cursor
        )

    return _page((await session.scalars(statement)).all(), limit, listing, following)


def _statuses(status: JobStatus | str | Collection[JobStatus | str] | None) -> list[str] | None:
    """The statuses asked for, checked and without repeats; None for every status."""
    if status is None:
        return None
    if isinstance(status, str):
        statuses: list[JobStatus | str] = [status]
    elif isinstance(status, Collection):
        statuses = list(status)
    else:
        raise JobValidationError("status", "must be a status or a collection of statuses")
    return sorted({str(check.member(JobStatus, s, "status", "status")) for s in statuses})
