"""The ends of several jobs that come together, sent as one statement: a job that
completes while others of the same loop turn do joins them, so a worker draining short
jobs sends one completion a turn, not one a job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.services import collection_jobs as jobs


class Completions:
    """`await completions.complete(connection, run)`: the run's job completed with its
    attempt, batched with every other completion asked for in the same loop turn."""

    def __init__(self) -> None:
        self._waiting: list[tuple[jobs.Run, asyncio.Future[datetime | None]]] = []

    async def complete(self, connect: Callable[[], Any], run: jobs.Run) -> datetime | None:
        """Its `completed_at`, or None when the run was no longer its job's. An error of
        the statement reaches every run of the batch, each of which may send it again."""
        future: asyncio.Future[datetime | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((run, future))
        if len(self._waiting) == 1:  # the first of this turn sends the batch, next turn
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self._flush(connect))
            )
        return await future

    async def _flush(self, connect: Callable[[], Any]) -> None:
        batch, self._waiting = self._waiting, []
        try:
            async with connect() as conn:
                done: dict[uuid.UUID, datetime] = await jobs.complete_runs(
                    conn, [run for run, _ in batch]
                )
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for run, future in batch:
            if not future.done():
                future.set_result(done.get(run.job_id))
