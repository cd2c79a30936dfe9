"""Add collection_job model and update data_collection_log

Revision ID: 8e4d6b0c2a91
Revises: 3f9c1a2b7d10
Create Date: 2026-11-24

The guide's schema, built so that writers of the large, busy data_collection_logs never
wait more than a moment: the column is added without a scan, the foreign key NOT VALID
then validated (which doesn't block writers), the index built CONCURRENTLY. Each step
commits on its own and can be re-run, so an interrupted upgrade is finished by running it
again (an INVALID index left by a failed concurrent build is dropped and rebuilt). Written
on app.db.safe_migrations.
"""

from collections.abc import Sequence

from app.db import safe_migrations as safe

revision: str = "8e4d6b0c2a91"
down_revision: str | Sequence[str] | None = "3f9c1a2b7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "data_collection_logs_collection_job_id_fkey"
LOG_INDEX = "idx_data_collection_logs_collection_job_id"

JOBS_TABLE = """
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    analyst_id UUID NOT NULL REFERENCES analysts(id),
    collection_types TEXT[] NOT NULL,
    start_date TIMESTAMP WITH TIME ZONE NOT NULL,
    end_date TIMESTAMP WITH TIME ZONE NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    progress JSONB DEFAULT '{}',
    overall_progress VARCHAR(10) DEFAULT '0.0',
    estimated_completion_time TIMESTAMP WITH TIME ZONE,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    error_message VARCHAR(500),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
"""


def upgrade() -> None:
    safe.run(
        safe.create_table(
            "collection_jobs",
            JOBS_TABLE,
            indexes=[
                ("idx_collection_jobs_analyst_id", "analyst_id"),
                ("idx_collection_jobs_status", "status"),
            ],
        ),
        # Nullable, no default, no REFERENCES: a catalog change only, no table scan.
        safe.add_column("data_collection_logs", "collection_job_id UUID"),
        safe.add_foreign_key(
            FK, "data_collection_logs", "collection_job_id", "collection_jobs", "id"
        ),
        safe.create_index(LOG_INDEX, "data_collection_logs", "collection_job_id"),
    )


def downgrade() -> None:
    # The guide's rollback, in its order; collection_jobs' own indexes go with the table.
    safe.run(
        safe.drop_index(LOG_INDEX),
        safe.drop_column("data_collection_logs", "collection_job_id"),
        safe.drop_table("collection_jobs"),
    )
