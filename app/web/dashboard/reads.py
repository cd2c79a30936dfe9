"""What only the dashboard reads, beside the API's queries (`app.web.queries`): analysts'
names, the jobs that need attention, pickup latency; and a short cache that lets many open
tabs share one read."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Analyst
from app.web import queries
from app.web.schemas import JobState

T = TypeVar("T")


class Shared(Generic[T]):
    """Values read at most once per `ttl` seconds per key, however many tabs ask: the
    dashboard's auto-refreshes go through it, so 50 open tabs cost the database what one
    does (a first page load reads afresh)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        found = self._values.get(key)
        if found is not None and found[0] > time.monotonic():
            return found[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # the first asks; the others wait for its answer
            found = self._values.get(key)
            if found is not None and found[0] > time.monotonic():
                return found[1]
            value = await read()
            if len(self._values) > 1000:  # many filters: start over rather than grow
                self._values.clear()
            self._values[key] = (time.monotonic() + self.ttl, value)
            return value


async def analyst_names(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Analyst.id, Analyst.name).where(Analyst.id.in_(list(ids))))
    return {row.id: row.name for row in rows}


@dataclass
class Attention:
    stuck: list[JobState]
    """Running with no report for `stuck_after`."""
    rescued: list[tuple[JobState, int]]
    """Jobs with an attempt lost in the last day, and how many of their attempts were lost."""
    one_from_the_cap: list[tuple[JobState, int]]
    """Not finished, lost `max_lost - 1` times: one more loss fails them."""
    failed: list[JobState]
    """Failed in the last day, newest first."""


_LOST = text(
    """
SELECT a.collection_job_id AS id, count(*) AS lost, max(a.ended_at) AS last_lost
FROM collection_job_attempts a
WHERE a.outcome = 'lost'
  AND a.collection_job_id IN (SELECT collection_job_id FROM collection_job_attempts
                              WHERE outcome = 'lost' AND ended_at > now() - interval '1 day')
GROUP BY a.collection_job_id
ORDER BY last_lost DESC
LIMIT :limit
"""
)
_AT_THE_EDGE = text(
    """
SELECT a.collection_job_id AS id, count(*) AS lost
FROM collection_job_attempts a JOIN collection_jobs j ON j.id = a.collection_job_id
WHERE a.outcome = 'lost' AND j.status IN ('pending', 'running')
GROUP BY a.collection_job_id
HAVING count(*) = :edge
LIMIT :limit
"""
)
_FAILED = text(
    """
SELECT id FROM collection_jobs
WHERE completed_at > now() - interval '1 day' AND status = 'failed'
ORDER BY completed_at DESC
LIMIT :limit
"""
)
_STUCK = text(
    """
SELECT id FROM collection_jobs
WHERE status = 'running' AND updated_at < now() - make_interval(secs => :seconds)
ORDER BY updated_at
LIMIT :limit
"""
)


async def attention(
    session: AsyncSession, *, stuck_after: timedelta, max_lost: int, limit: int = 100
) -> Attention:
    """The jobs an operator should look at; each list at most `limit` long."""
    stuck = [
        r.id
        for r in await session.execute(
            _STUCK, {"seconds": stuck_after.total_seconds(), "limit": limit}
        )
    ]
    lost = {r.id: int(r.lost) for r in await session.execute(_LOST, {"limit": limit})}
    edge = (
        {
            r.id: int(r.lost)
            for r in await session.execute(_AT_THE_EDGE, {"edge": max_lost - 1, "limit": limit})
        }
        if max_lost > 1
        else {}
    )
    failed = [r.id for r in await session.execute(_FAILED, {"limit": limit})]
    states = {s.id: s for s in await queries.job_states(session, [*stuck, *lost, *edge, *failed])}
    return Attention(
        stuck=[states[i] for i in stuck if i in states],
        rescued=[(states[i], n) for i, n in lost.items() if i in states],
        one_from_the_cap=[(states[i], n) for i, n in edge.items() if i in states],
        failed=[states[i] for i in failed if i in states],
    )


_PICKUP = text(
    """
WITH runs AS (
    SELECT a.run_started_at,
           a.run_started_at - COALESCE(
               lag(a.ended_at) OVER (PARTITION BY a.collection_job_id ORDER BY a.run_started_at),
               j.created_at) AS waited
    FROM collection_job_attempts a JOIN collection_jobs j ON j.id = a.collection_job_id
    WHERE a.collection_job_id IN (SELECT collection_job_id FROM collection_job_attempts
                                  WHERE run_started_at >= now() - interval '1 hour')
)
SELECT date_trunc('minute', run_started_at) AS minute,
       CAST(EXTRACT(epoch FROM avg(waited)) AS float8) AS mean,
       CAST(EXTRACT(epoch FROM max(waited)) AS float8) AS worst
FROM runs
WHERE run_started_at >= date_trunc('minute', now()) - interval '59 minutes'
GROUP BY 1
"""
)


async def pickup_per_minute(session: AsyncSession) -> dict[datetime, tuple[float, float]]:
    """Minute -> (mean, worst) seconds from a job becoming pending (created, or its last
    attempt's end) to its claim, for the claims of the last hour."""
    rows = await session.execute(_PICKUP)
    return {r.minute: (max(0.0, r.mean), max(0.0, r.worst)) for r in rows}
