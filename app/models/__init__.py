"""The data layer's models; import them from here."""

from app.models.analyst import Analyst
from app.models.base import Base
from app.models.collection_job import CollectionJob
from app.models.data_collection_log import DataCollectionLog
from app.models.enums import AttemptOutcome, CollectionType, JobStatus, LogStatus
from app.models.worker import CollectionJobAttempt, CollectionWorker

metadata = Base.metadata
"""Every model's table, once this package is imported: what Alembic compares against
(pytest-alembic's `all_models_register_on_metadata` finds the models' package by it)."""

__all__ = [
    "Analyst",
    "AttemptOutcome",
    "Base",
    "CollectionJob",
    "CollectionJobAttempt",
    "CollectionType",
    "CollectionWorker",
    "DataCollectionLog",
    "JobStatus",
    "LogStatus",
    "metadata",
]
