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
    """A progress report reached a job this worker no longer runs: stop working on it.

    The job was cancelled, failed, or put back to pending (and perhaps claimed again by
    another worker, when the report names the run it belongs to).
    """

    def __init__(self, job_id: uuid.UUID, status: JobStatus, detail: str = "") -> None:
        super().__init__(f"collection job {job_id} is {status}{detail}; progress not recorded")
        self.job_id = job_id
        self.status = status
