"""A running job's writes: its collectors' progress and logs, each fenced to the attempt's
run, with a line in the log at each quarter of the way; and the estimates it was given on
the way, to hold up to the real finish."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, TypeVar

from app.services import collection_jobs as jobs
from app.worker.metrics import ESTIMATE_POINTS, NO_METRICS, Observer

T = TypeVar("T")


class Sender(Protocol):
    """Sends one of the service's calls on a connection, waiting out an outage."""

    async def send(self, what: str, call: Callable[[jobs.Executor], Awaitable[T]]) -> T: ...


log = logging.getLogger("app.worker.runtime")


class Reporter:
    """A collector's progress and logs, each write fenced to this attempt's run."""

    def __init__(
        self,
        sender: Sender,
        run: jobs.Run,
        progressed: Callable[[uuid.UUID], None],
        observer: Observer = NO_METRICS,
    ) -> None:
        self._sender, self._job_id, self._run = sender, run.job_id, run.started_at
        self._progressed, self._observer = progressed, observer
        self._quarter = 0
        self.estimates: dict[int, datetime] = {}
        """Percent of progress -> the first estimated finish given at or past it (this
        attempt's; an earlier attempt's are gone with it)."""

    async def report(self, collection_type: str, percent: float) -> None:
        began = time.perf_counter()
        report = await self._sender.send(
            "record progress",
            lambda conn: jobs.report_progress(
                conn, self._job_id, collection_type, percent, run_started_at=self._run
            ),
        )
        self._observer.reported(time.perf_counter() - began)
        self._progressed(self._job_id)
        finish = report.estimated_completion_time
        for point in ESTIMATE_POINTS:
            if report.overall_progress >= point and point not in self.estimates and finish:
                self.estimates[point] = finish
        quarter = int(report.overall_progress // 25)
        if quarter > self._quarter and report.overall_progress < 100:
            self._quarter = quarter
            log.info(
                "job %s: %.1f%%, estimated finish %s",
                self._job_id,
                report.overall_progress,
                finish.astimezone().strftime("%H:%M:%S") if finish else "unknown",
            )

    def estimate_errors(self, finished: datetime) -> dict[int, float]:
        """Percent of progress -> how far (s) the estimate given there was from `finished`."""
        return {p: abs((at - finished).total_seconds()) for p, at in self.estimates.items()}

    async def log(self, collection_type: str, entry: jobs.LogEntry) -> None:
        await self._sender.send(
            "write a log",
            lambda conn: jobs.add_job_logs(conn, self._job_id, [entry], run_started_at=self._run),
        )
