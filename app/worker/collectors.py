"""What the platform writes: one collector per collection type, and what it is given.

A collector is an async function `collect(ctx)` that collects one type of one job. It
reports progress and writes logs through its context, both fenced to its attempt: once
the job is cancelled, rescued or finished elsewhere, they raise `JobNotRunningError` and the
runtime stops the collector. Raising `FinalError` fails the job at once; any other error is
retried with backoff, a bounded number of times.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.models import CollectionJob, CollectionType
from app.services.collection_jobs import LogEntry


class FinalError(Exception):
    """A collector's error that no retry can mend: the job fails with its message."""


class Reporter(Protocol):
    async def report(self, collection_type: str, percent: float) -> None: ...

    async def log(self, collection_type: str, entry: LogEntry) -> None: ...


@dataclass(frozen=True)
class CollectorContext:
    """One type of one job, in one attempt."""

    job: CollectionJob
    collection_type: str
    resume_from: float
    """The percent this type had reached in an earlier attempt (0 on the first)."""
    run_started_at: datetime
    _reporter: Reporter

    async def report(self, percent: float) -> None:
        """This type's progress, 0-100 (never moves back; a lower value is ignored)."""
        await self._reporter.report(self.collection_type, percent)

    async def log(
        self, status: str, records_collected: int = 0, message: str | None = None
    ) -> None:
        """One `data_collection_logs` row for this type."""
        entry = LogEntry(self.collection_type, status, records_collected, message)
        await self._reporter.log(self.collection_type, entry)


Collector = Callable[[CollectorContext], Awaitable[None]]
Collectors = Mapping[str, Collector]
"""Collection type -> its collector."""


class CollectorLoadError(Exception):
    """A `module:attribute` that does not name a mapping of collectors."""


def load_collectors(spec: str) -> dict[str, Collector]:
    """The collectors named by `module:attribute` (a mapping of type -> async function),
    checked before anything is claimed."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CollectorLoadError(f"{spec!r} is not module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CollectorLoadError(f"cannot import {module_name}: {exc}") from None
    found = getattr(module, attribute, None)
    if not isinstance(found, Mapping) or not found:
        raise CollectorLoadError(f"{spec} is not a mapping of collection type to collector")
    known = {t.value for t in CollectionType}
    collectors: dict[str, Collector] = {}
    for name, collector in found.items():
        if str(name) not in known:
            raise CollectorLoadError(f"{spec}: {name!r} is not a collection type")
        if not callable(collector):
            raise CollectorLoadError(f"{spec}: the collector of {name} is not callable")
        collectors[str(name)] = collector
    return collectors
