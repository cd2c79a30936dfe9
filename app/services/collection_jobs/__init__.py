"""The collection job lifecycle, for the platform's API and its workers.

Every change is one SQL statement whose WHERE clause states what must still be true
(`status IN (...)`), so any number of callers on any number of machines can write at once:
nothing is read into Python and written back, and a lost race is reported, never papered
over. The functions take the caller's `AsyncSession` and never commit; the caller's unit of
work (`app.db.engine.session_scope`) does. Workers should commit each report at once (an
open transaction keeps the job's row locked), or send reports and logs on a connection in
autocommit mode (see `Executor`).
"""

from app.services.collection_jobs.common import Executor
from app.services.collection_jobs.errors import (
    CollectionJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobNotRunningError,
    JobValidationError,
)
from app.services.collection_jobs.lifecycle import (
    ALLOWED_FROM,
    NewCollectionJob,
    cancel_job,
    claim_next_job,
    complete_job,
    completion,
    create_job,
    fail_job,
    fail_stalled_jobs,
    list_stalled_jobs,
    requeue_stalled_jobs,
    start_job,
    validate_new_job,
)
from app.services.collection_jobs.logs import (
    MAX_PAGE_SIZE,
    Cursor,
    LogEntry,
    Page,
    add_job_logs,
    list_analyst_jobs,
    list_job_logs,
    next_page,
)
from app.services.collection_jobs.notify import JOB_CANCELLED, JOB_CREATED
from app.services.collection_jobs.progress import (
    MAX_ESTIMATE,
    PROGRESS_STATEMENT,
    ProgressReport,
    report_progress,
)

__all__ = [
    "ALLOWED_FROM",
    "JOB_CANCELLED",
    "JOB_CREATED",
    "MAX_ESTIMATE",
    "MAX_PAGE_SIZE",
    "PROGRESS_STATEMENT",
    "CollectionJobError",
    "Cursor",
    "Executor",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobValidationError",
    "LogEntry",
    "NewCollectionJob",
    "Page",
    "ProgressReport",
    "add_job_logs",
    "cancel_job",
    "claim_next_job",
    "complete_job",
    "completion",
    "create_job",
    "fail_job",
    "fail_stalled_jobs",
    "list_analyst_jobs",
    "list_job_logs",
    "list_stalled_jobs",
    "next_page",
    "report_progress",
    "requeue_stalled_jobs",
    "start_job",
    "validate_new_job",
]
