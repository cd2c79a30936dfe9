"""Server-Sent Events of job states, each stream a subscriber of the process's `LiveJobs`.

Every stream subscribes before it reads what it sends first, so no change falls between
the two. Its first event is the current state (one job's, or a `snapshot` of the pending
and running jobs of a filter); a client reconnecting with `Last-Event-ID` gets the jobs
changed since, when this process still knows them, else the snapshot: either way its last
state of every job is the latest. A comment line every `KEEPALIVE_SECONDS` keeps proxies
from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from fastapi.responses import StreamingResponse

from app.db.faults import describe, is_outage
from app.services.collection_jobs import JobSelection
from app.web import queries
from app.web.live import LiveJobs, Subscriber
from app.web.schemas import JobState
from app.web.state import WebState

log = logging.getLogger("app.web.live")

KEEPALIVE_SECONDS = 15.0
SNAPSHOT_JOBS = 500
"""The most pending and running jobs a `snapshot` holds, newest first."""
RECONNECT_MS = 2000
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _event(kind: str, data: str, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"


def _job_event(live: LiveJobs, seq: int, state: JobState) -> str:
    return _event("job", state.model_dump_json(), live.event_id(seq))


def matches(selection: JobSelection) -> Callable[[JobState], bool]:
    """`selection` (analyst, statuses, type: the filters a stream takes) as a test."""
    statuses = {str(s) for s in selection.statuses} if selection.statuses else None
    analyst = str(selection.analyst_id) if selection.analyst_id else None
    kind = str(selection.collection_type) if selection.collection_type else None

    def wants(state: JobState) -> bool:
        return (
            (analyst is None or str(state.analyst_id) == analyst)
            and (statuses is None or state.status.value in statuses)
            and (kind is None or kind in {t.value for t in state.collection_types})
        )

    return wants


async def _follow(
    live: LiveJobs, subscriber: Subscriber, resync: Callable[[], AsyncIterator[str]]
) -> AsyncIterator[str]:
    while not live.ending.is_set():
        try:
            async with asyncio.timeout(KEEPALIVE_SECONDS):
                await subscriber.wait()
        except TimeoutError:
            yield ": keep-alive\n\n"
            continue
        if live.ending.is_set():
            return
        if subscriber.overflowed:  # too far behind: start over from the current state
            subscriber.overflowed = False
            subscriber.take()
            async for chunk in resync():
                yield chunk
            continue
        for seq, state in subscriber.take():
            yield _job_event(live, seq, state)


def _response(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream", headers=HEADERS)


async def _guarded(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """A stream cut by an outage ends with an `unavailable` event; the client reconnects."""
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("an event stream ended: %s", describe(exc))
        yield _event("unavailable", json.dumps({"detail": "the database is out of reach"}))


def job_stream(state: WebState, job: JobState) -> StreamingResponse:
    """One job's states."""
    live = state.live
    subscriber = Subscriber(lambda s: s.id == job.id, job_id=job.id)

    async def current() -> AsyncIterator[str]:
        seq = live.seq
        async with state.engine.connect() as conn:
            found = await queries.job_states(conn, [job.id])
        for found_state in found:
            yield _job_event(live, seq, found_state)

    async def chunks() -> AsyncIterator[str]:
        live.subscribe(subscriber)
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            async for chunk in current():
                yield chunk
            async for chunk in _follow(live, subscriber, current):
                yield chunk
        finally:
            live.unsubscribe(subscriber)

    return _response(_guarded(chunks()))


def jobs_stream(
    state: WebState, selection: JobSelection, last_event_id: str | None
) -> StreamingResponse:
    """Every job of `selection` (analyst, statuses, type)."""
    live = state.live
    wants = matches(selection)
    visible = matches(replace(selection, statuses=None))
    """A replay sends a job of the caller's filter whatever its status now: it may have
    left the status filter while the client was away, and the client must hear so."""
    subscriber = Subscriber(wants)

    async def snapshot() -> AsyncIterator[str]:
        seq = live.seq
        async with state.engine.connect() as conn:
            states = await queries.active_states(conn, selection, SNAPSHOT_JOBS)
        subscriber.shown(states)
        data = "[" + ",".join(s.model_dump_json() for s in states) + "]"
        yield _event("snapshot", data, live.event_id(seq))

    async def since(changed: list[uuid.UUID]) -> AsyncIterator[str]:
        if not changed:
            return
        seq = live.seq
        async with state.engine.connect() as conn:
            states = [s for s in await queries.job_states(conn, changed) if visible(s)]
        subscriber.shown(states)
        for found in states:
            yield _job_event(live, seq, found)

    async def chunks() -> AsyncIterator[str]:
        live.subscribe(subscriber)
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            changed = live.changed_since(last_event_id) if last_event_id else None
            first = since(list(changed)) if changed is not None else snapshot()
            async for chunk in first:
                yield chunk
            async for chunk in _follow(live, subscriber, snapshot):
                yield chunk
        finally:
            live.unsubscribe(subscriber)

    return _response(_guarded(chunks()))
