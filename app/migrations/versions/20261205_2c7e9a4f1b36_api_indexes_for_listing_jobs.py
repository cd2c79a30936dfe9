"""api: indexes for listing jobs newest first and the last hour's finishes

The API (`app.web`) lists jobs newest first, keyset-paged on (created_at, id), for every
analyst or one. With only the guide's indexes each page sorts every matching job: at a
million jobs a page took a sequential scan. These two indexes make each page an index
range scan (tests/test_query_plans.py holds it on EXPLAIN). The third, partial, holds the
finished jobs by `completed_at`, so the queue's finishes per minute read the last hour's
rows only; two on `collection_job_attempts` do the same for the dashboard's last hour of
claims (pickup latency) and last day of lost attempts. Each is built `CONCURRENTLY` (no
writer waits); downgrading drops them and nothing else.

Revision ID: 2c7e9a4f1b36
Revises: 9b2e5f81c4d3
Create Date: 2026-12-05 22:55:43.192347
"""

from collections.abc import Sequence

from app.db.migrate import safe

revision: str = "2c7e9a4f1b36"
down_revision: str | Sequence[str] | None = "9b2e5f81c4d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Change the schema through app.db.migrate.safe (docs/revisions.md):
# scripts/lint_migrations.py fails a revision that calls Alembic's operations directly.


def upgrade() -> None:
    safe.run(
        safe.create_index(
            "idx_collection_jobs_analyst_created_at_id",
            "collection_jobs",
            "analyst_id, created_at, id",
        )
    )
    safe.run(
        safe.create_index(
            "idx_collection_jobs_completed_at",
            "collection_jobs",
            "completed_at",
            where="completed_at IS NOT NULL",
        )
    )
    safe.run(
        safe.create_index("idx_collection_jobs_created_at_id", "collection_jobs", "created_at, id")
    )

    safe.run(
        safe.create_index(
            "idx_collection_job_attempts_run_started_at",
            "collection_job_attempts",
            "run_started_at",
        )
    )
    safe.run(
        safe.create_index(
            "idx_collection_job_attempts_lost_ended_at",
            "collection_job_attempts",
            "ended_at",
            where="outcome = 'lost'",
        )
    )


def downgrade() -> None:
    safe.run(safe.drop_index("idx_collection_job_attempts_lost_ended_at"))
    safe.run(safe.drop_index("idx_collection_job_attempts_run_started_at"))
    safe.run(safe.drop_index("idx_collection_jobs_created_at_id"))
    safe.run(safe.drop_index("idx_collection_jobs_completed_at"))
    safe.run(safe.drop_index("idx_collection_jobs_analyst_created_at_id"))
