"""Wake-up calls for workers: PostgreSQL notifications sent in the caller's transaction.

`pg_notify` is delivered when the transaction commits and dropped if it rolls back, so a
worker that `LISTEN`s hears of a change exactly when it can be seen, never earlier and
never for a change that was not written.
"""

from __future__ import annotations

JOB_CREATED = "collection_jobs_created"
"""Channel: a job became pending (created, requeued, retried, handed back, rescued);
payload: its id. Waiting workers look at the queue."""
ATTEMPT_STOPPED = "collection_job_attempts_stopped"
"""Channel: a live attempt was ended by someone other than its worker (cancel, requeue,
fail); payload: the attempt's id. Its worker stops that attempt's collectors at once, and
only those: a newer attempt of the same job is not touched."""
JOB_CHANGED = "collection_jobs_changed"
"""Channel: a job changed other than by its running worker's hot path (created, cancelled,
requeued, retried, failed, handed back, rescued); payload: its id. A claim, a progress
report and a completion do not tell it: a notification makes each commit take the
server's one notification-queue lock, which halved the reports a server takes
(docs/benchmarks.md). Whoever shows jobs live (`app.web`) hears this channel and reads
the running jobs that changed."""
