"""The job service's errors: each message is one line, fit to show the caller."""

from __future__ import annotations

import uuid

from app.models import JobStatus


class CollectionJobError(Exception):
    """Base of this module's errors."""


class JobValidationError(CollectionJobError, ValueError):
    """Bad input, named by field; nothing was written."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class JobNotFoundError(CollectionJobError, LookupError):
    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(f"collection job {job_id} does not exist")
        self.job_id = job_id


class InvalidTransitionError(CollectionJobError):
    """The job's status does not allow the change (or another caller changed it first)."""

    def __init__(self, job_id: uuid.UUID, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"collection job {job_id} is {current}; it cannot become {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class JobNotRunningError(CollectionJobError):
    """A worker's write (progress, logs, completion, failure) reached a job it no longer
    runs: stop working on it.

    The job was cancelled, failed, or put back to pending (and perhaps claimed again by
    another worker, when the write names the run it belongs to).
    """

    def __init__(
        self, job_id: uuid.UUID, status: JobStatus, detail: str = "", what: str = "progress"
    ) -> None:
        super().__init__(f"collection job {job_id} is {status}{detail}; {what} not recorded")
        self.job_id = job_id
        self.status = status


def not_this_run(
    job_id: uuid.UUID, status: JobStatus, started_at: object, run: object, what: str
) -> JobNotRunningError:
    """Why a write fenced to the run that began at `run` did not land."""
    if status is not JobStatus.RUNNING:
        return JobNotRunningError(job_id, status, what=what)
    if started_at != run:
        return JobNotRunningError(job_id, status, " again in a newer run", what)
    return JobNotRunningError(job_id, status, " in a run that began after this write", what)
