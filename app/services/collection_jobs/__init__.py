"""The collection job lifecycle, for the platform's API, its operators and its workers:
the one owner of a job's status and of its attempts.

Every change is one SQL statement whose WHERE clause states what must still be true
(`status IN (...)`, the run it belongs to), so any number of callers on any number of
machines can write at once: nothing is read into Python and written back, and a lost race
is reported, never papered over. `MOVES` lists every move a statement makes; no other
module writes a job's status or an attempt. The functions take the caller's
`AsyncSession` (or connection) and never commit; the caller's unit of work
(`app.db.engine.session_scope`) does. Workers send their statements on a connection in
autocommit mode (see `Executor`): each is its own transaction, sent through the driver.
"""

from app.services.collection_jobs.common import Executor
from app.services.collection_jobs.create import NewCollectionJob, create_job, validate_new_job
from app.services.collection_jobs.errors import (
    CollectionJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobNotRunningError,
    JobValidationError,
)
from app.services.collection_jobs.lifecycle import (
    ALLOWED_FROM,
    MOVES,
    JobSelection,
    Move,
    cancel_job,
    cancel_jobs,
    complete_job,
    fail_job,
    fail_jobs,
    fail_stalled_jobs,
    list_stalled_jobs,
    requeue_job,
    requeue_jobs,
    requeue_stalled_jobs,
    retry_job,
    retry_jobs,
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
from app.services.collection_jobs.notify import ATTEMPT_STOPPED, JOB_CHANGED, JOB_CREATED
from app.services.collection_jobs.progress import (
    MAX_ESTIMATE,
    PROGRESS_STATEMENT,
    ProgressReport,
    report_progress,
)
from app.services.collection_jobs.runs import (
    Claimed,
    Run,
    claim_jobs,
    claim_next_job,
    complete_run,
    complete_runs,
    end_stopped_run,
    fail_run,
    heartbeat,
    queue_state,
    register_worker,
    release_orphans,
    release_run,
    rescue,
    start_job,
    worker_stopped,
)

__all__ = [
    "ALLOWED_FROM",
    "ATTEMPT_STOPPED",
    "JOB_CHANGED",
    "JOB_CREATED",
    "MAX_ESTIMATE",
    "MAX_PAGE_SIZE",
    "MOVES",
    "PROGRESS_STATEMENT",
    "Claimed",
    "CollectionJobError",
    "Cursor",
    "Executor",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobSelection",
    "JobValidationError",
    "LogEntry",
    "Move",
    "NewCollectionJob",
    "Page",
    "ProgressReport",
    "Run",
    "add_job_logs",
    "cancel_job",
    "cancel_jobs",
    "claim_jobs",
    "claim_next_job",
    "complete_job",
    "complete_run",
    "complete_runs",
    "create_job",
    "end_stopped_run",
    "fail_job",
    "fail_jobs",
    "fail_run",
    "fail_stalled_jobs",
    "heartbeat",
    "list_analyst_jobs",
    "list_job_logs",
    "list_stalled_jobs",
    "next_page",
    "queue_state",
    "register_worker",
    "release_orphans",
    "release_run",
    "report_progress",
    "requeue_job",
    "requeue_jobs",
    "requeue_stalled_jobs",
    "rescue",
    "retry_job",
    "retry_jobs",
    "start_job",
    "validate_new_job",
    "worker_stopped",
]
