"""What a worker tells about itself: an `Observer` the runtime calls at each event, and
`PrometheusMetrics`, the observer behind `python -m app.worker ... --metrics-port`.

`prometheus_client` is an optional extra (`metrics`): nothing here imports it until a
`PrometheusMetrics` is made. Names and units follow Prometheus' conventions; the list with
their meaning is in docs/worker.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.db.errors import ConfigurationError
from app.models import AttemptOutcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ESTIMATE_POINTS = (10, 50, 90)
"""Percent of a job's progress at which its estimated finish is held up to the real one."""

NOT_INSTALLED = (
    "--metrics-port needs prometheus_client: "
    "pip install 'collection-jobs-db[metrics]' (or prometheus-client)"
)


class Observer:
    """Does nothing; `PrometheusMetrics` (or a benchmark's own) overrides what it counts."""

    def claimed(self, waited_seconds: float) -> None:
        """A job claimed, `waited_seconds` after it became pending."""

    def ended(self, outcome: AttemptOutcome) -> None:
        """completed, failed, cancelled, requeued (handed back) or superseded."""

    def rescued(self, count: int) -> None:
        """Jobs this process's rescuer requeued (or failed) because their worker was gone."""

    def collected(self, collection_type: str, seconds: float) -> None:
        """One type of one job collected (retries included), however it ended."""

    def reported(self, seconds: float) -> None:
        """One progress report's round trip."""

    def estimate_errors(self, errors: Mapping[int, float]) -> None:
        """For a completed job: percent of progress -> |estimated - real finish| (s)."""

    def running(self, count: int) -> None:
        """Jobs this process runs now."""

    def queue(self, pending: int, oldest_heartbeat_age: float | None) -> None:
        """Pending jobs, and the age of the oldest heartbeat of a live attempt (any worker)."""

    @property
    def wants_queue(self) -> bool:
        """Whether `queue` is worth its statement."""
        return False


NO_METRICS = Observer()


class PrometheusMetrics(Observer):
    """The worker's metrics in `registry` (prometheus_client's default one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            from prometheus_client import REGISTRY, Counter, Gauge, Histogram
        except ImportError:
            raise ConfigurationError(NOT_INSTALLED) from None
        reg = registry or REGISTRY

        def counter(name: str, doc: str) -> Any:
            return Counter(f"collection_worker_jobs_{name}", doc, registry=reg)

        self._claimed = counter("claimed", "Jobs claimed by this process.")
        self._ended = {
            outcome: counter(name, doc)
            for outcome, name, doc in (
                (AttemptOutcome.COMPLETED, "completed", "Jobs this process completed."),
                (
                    AttemptOutcome.FAILED,
                    "failed",
                    "Jobs this process ran that failed (a type failed for good, a bug, stuck).",
                ),
                (
                    AttemptOutcome.CANCELLED,
                    "cancelled",
                    "Jobs cancelled while this process ran them.",
                ),
                (
                    AttemptOutcome.RELEASED,
                    "requeued",
                    "Jobs this process ran that went back to the queue with their progress "
                    "(shutdown, cut off, stuck, an operator's requeue).",
                ),
            )
        }
        self._rescued = counter("rescued", "Jobs of a gone worker that this process rescued.")
        fast = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self._pickup = Histogram(
            "collection_worker_pickup_latency_seconds",
            "From a job becoming pending to its claim.",
            buckets=fast,
            registry=reg,
        )
        self._collect = Histogram(
            "collection_worker_collect_duration_seconds",
            "Run time of one collection type of one job, retries included.",
            ["collection_type"],
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400),
            registry=reg,
        )
        self._report = Histogram(
            "collection_worker_progress_report_duration_seconds",
            "Round trip of one progress report.",
            buckets=fast,
            registry=reg,
        )
        self._estimate = Histogram(
            "collection_worker_estimate_error_seconds",
            "How far a completed job's estimated finish was from the real one, by the "
            "percent of progress at which it was estimated.",
            ["progress_percent"],
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
            registry=reg,
        )
        self._running = Gauge(
            "collection_worker_running_jobs", "Jobs this process runs now.", registry=reg
        )
        self._pending = Gauge(
            "collection_worker_pending_jobs", "Pending jobs in the queue.", registry=reg
        )
        self._oldest = Gauge(
            "collection_worker_oldest_heartbeat_age_seconds",
            "Age of the oldest heartbeat of a live attempt, any worker (0 when none).",
            registry=reg,
        )

    def claimed(self, waited_seconds: float) -> None:
        self._claimed.inc()
        self._pickup.observe(max(0.0, waited_seconds))

    def ended(self, outcome: AttemptOutcome) -> None:
        if outcome in self._ended:
            self._ended[outcome].inc()

    def rescued(self, count: int) -> None:
        self._rescued.inc(count)

    def collected(self, collection_type: str, seconds: float) -> None:
        self._collect.labels(collection_type).observe(seconds)

    def reported(self, seconds: float) -> None:
        self._report.observe(seconds)

    def estimate_errors(self, errors: Mapping[int, float]) -> None:
        for percent, error in errors.items():
            self._estimate.labels(str(percent)).observe(error)

    def running(self, count: int) -> None:
        self._running.set(count)

    def queue(self, pending: int, oldest_heartbeat_age: float | None) -> None:
        self._pending.set(pending)
        self._oldest.set(oldest_heartbeat_age or 0.0)

    @property
    def wants_queue(self) -> bool:
        return True


def serve(port: int) -> PrometheusMetrics:
    """The metrics, served on http://0.0.0.0:`port`/metrics from a thread of their own."""
    metrics = PrometheusMetrics()
    from prometheus_client import start_http_server

    try:
        start_http_server(port)
    except OSError as exc:
        raise ConfigurationError(f"--metrics-port {port}: {exc.strerror or exc}") from None
    return metrics
