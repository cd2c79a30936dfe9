"""Which state the collection-jobs feature is in, and what to run to finish either way.

Every migration step commits on its own, so an interrupted upgrade or downgrade leaves
part of the feature behind, with Alembic's label not yet moved. Each step is safe to run
again, so any state can be finished in either direction; this says how.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

BASELINE_REVISION, FEATURE_REVISION = "3f9c1a2b7d10", "8e4d6b0c2a91"

_PARTS_SQL = """
SELECT
    to_regclass('collection_jobs') IS NOT NULL,
    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('data_collection_logs')
            AND attname = 'collection_job_id' AND NOT attisdropped),
    (SELECT convalidated FROM pg_constraint
     WHERE conname = 'data_collection_logs_collection_job_id_fkey'),
    (SELECT indisvalid FROM pg_index
     WHERE indexrelid = to_regclass('idx_data_collection_logs_collection_job_id')),
    to_regclass('alembic_version') IS NOT NULL
"""

_UPGRADE = "run `alembic upgrade head` (plain SQL: sql/collection_jobs_up.sql)"


@dataclass(frozen=True)
class FeatureState:
    complete: bool
    description: str


def feature_state(conn: Connection) -> FeatureState:
    """The feature's state in the connection's database (search_path: its schema)."""
    table, column, fk, index, versioned = conn.execute(text(_PARTS_SQL)).one()
    label = None
    if versioned:
        label = conn.execute(text("SELECT max(version_num) FROM alembic_version")).scalar()
    parts = {
        "table collection_jobs": bool(table),
        "column data_collection_logs.collection_job_id": bool(column),
        "foreign key (validated)": fk is True,
        "index on collection_job_id (valid)": index is True,
    }
    missing = [name for name, present in parts.items() if not present]
    nothing = not table and not column and fk is None and index is None
    labelled = f"labelled {label}" if label else "no Alembic label"

    if not missing:
        if label == BASELINE_REVISION:
            return FeatureState(
                False,
                f"the feature is complete but {labelled}: an upgrade stopped before recording "
                "itself; run `alembic upgrade head` to finish",
            )
        return FeatureState(True, f"collection jobs are in place ({labelled})")
    if nothing:
        if label == FEATURE_REVISION:
            return FeatureState(
                False,
                f"the feature is removed but {labelled}: a downgrade stopped before recording "
                f"itself; run `alembic downgrade {BASELINE_REVISION}` to finish",
            )
        return FeatureState(False, f"before the feature ({labelled}): {_UPGRADE}")
    half = f"half-way ({labelled}; missing: {', '.join(missing)})"
    if label == FEATURE_REVISION:
        return FeatureState(
            False,
            f"{half}: an interrupted downgrade; finish the rollback with `alembic downgrade "
            f"{BASELINE_REVISION}`, or restore the feature with `alembic stamp "
            f"{BASELINE_REVISION}` then `alembic upgrade head`",
        )
    if label is not None:
        return FeatureState(
            False,
            f"{half}: an interrupted upgrade; finish it with `alembic upgrade head`, or roll "
            f"it back with `alembic stamp {FEATURE_REVISION}` then `alembic downgrade "
            f"{BASELINE_REVISION}`",
        )
    return FeatureState(
        False,
        f"{half}: an interrupted run of the SQL files; run sql/collection_jobs_up.sql again "
        "to finish, or sql/collection_jobs_down.sql to roll back",
    )
