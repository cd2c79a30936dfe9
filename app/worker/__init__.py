"""The worker runtime: runs collection jobs through the platform's collectors.

    from app.worker import Worker, WorkerSettings, CollectorContext, FinalError

See docs/worker.md. `python -m app.worker module:attribute` runs a worker process.
"""

from app.worker.collectors import (
    Collector,
    CollectorContext,
    CollectorLoadError,
    Collectors,
    FinalError,
    load_collectors,
)
from app.worker.runtime import Worker, WorkerSettings

__all__ = [
    "Collector",
    "CollectorContext",
    "CollectorLoadError",
    "Collectors",
    "FinalError",
    "Worker",
    "WorkerSettings",
    "load_collectors",
]
