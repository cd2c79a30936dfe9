"""Add collection_job model and update data_collection_log

Revision ID: 8e4d6b0c2a91
Revises: 3f9c1a2b7d10
Create Date: 2026-11-24

The guide's schema, built so that writers of the large, busy data_collection_logs never
wait more than a moment: the column is added without a scan, the foreign key NOT VALID
then validated (which doesn't block writers), the index built CONCURRENTLY. Each step
commits on its own and can be re-run, so an interrupted upgrade is finished by running it
again (an INVALID index left by a failed concurrent build is dropped and rebuilt).
"""

from collections.abc import Sequence

from app.db.migrations import Step, run_steps

revision: str = "8e4d6b0c2a91"
down_revision: str | Sequence[str] | None = "3f9c1a2b7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "data_collection_logs_collection_job_id_fkey"
LOG_INDEX = "idx_data_collection_logs_collection_job_id"

UPGRADE = [
    # A new, empty table: its FK briefly locks analysts, so it follows the lock rules.
    Step(
        """CREATE TABLE IF NOT EXISTS collection_jobs (
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
)""",
        blocks_writers=True,
    ),
    Step(
        "CREATE INDEX IF NOT EXISTS idx_collection_jobs_analyst_id ON collection_jobs(analyst_id)",
        blocks_writers=True,
    ),
    Step(
        "CREATE INDEX IF NOT EXISTS idx_collection_jobs_status ON collection_jobs(status)",
        blocks_writers=True,
    ),
    # Nullable, no default, no REFERENCES: a catalog change only, no table scan.
    Step(
        "ALTER TABLE data_collection_logs ADD COLUMN IF NOT EXISTS collection_job_id UUID",
        blocks_writers=True,
    ),
    # NOT VALID: checks new rows only, so no scan under the strong lock.
    Step(
        f"""DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = '{FK}' AND conrelid = 'data_collection_logs'::regclass
    ) THEN
        ALTER TABLE data_collection_logs ADD CONSTRAINT {FK}
            FOREIGN KEY (collection_job_id) REFERENCES collection_jobs(id) NOT VALID;
    END IF;
END $$""",
        blocks_writers=True,
    ),
    # Scans the table under SHARE UPDATE EXCLUSIVE, which writers don't wait for.
    Step(f"ALTER TABLE data_collection_logs VALIDATE CONSTRAINT {FK}", blocks_writers=False),
    # Left over by an interrupted concurrent build: unusable, so drop it and build again.
    Step(
        f"""DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index
        WHERE indexrelid = to_regclass('{LOG_INDEX}') AND NOT indisvalid
    ) THEN
        DROP INDEX {LOG_INDEX};
    END IF;
END $$""",
        blocks_writers=True,
    ),
    Step(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {LOG_INDEX}"
        " ON data_collection_logs(collection_job_id)",
        blocks_writers=False,
    ),
]

DOWNGRADE = [
    Step(f"DROP INDEX CONCURRENTLY IF EXISTS {LOG_INDEX}", blocks_writers=False),
    Step(
        "ALTER TABLE data_collection_logs DROP COLUMN IF EXISTS collection_job_id",
        blocks_writers=True,
    ),
    # Its own indexes (idx_collection_jobs_*) go with it.
    Step("DROP TABLE IF EXISTS collection_jobs", blocks_writers=True),
]


def upgrade() -> None:
    run_steps(UPGRADE)


def downgrade() -> None:
    run_steps(DOWNGRADE)
