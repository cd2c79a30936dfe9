"""python -m app.worker MODULE:ATTRIBUTE [options]

Run a worker process: claims collection jobs whose every type has a collector in
MODULE:ATTRIBUTE (a mapping of collection type to async collector) and runs them until
SIGTERM or SIGINT (a second one stops at once). Jobs with a type it has no collector for
are left to other workers. Bad arguments or collectors: one line, exit 2, before anything
is claimed. `app.worker.demo:COLLECTORS` are demo collectors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

from app.db.cli import log_in_one_line, run_command
from app.db.embedded import database_url
from app.db.errors import ConfigurationError
from app.db.settings import load_settings
from app.worker.collectors import CollectorLoadError, load_collectors
from app.worker.job import StuckAction
from app.worker.metrics import NO_METRICS, serve
from app.worker.runtime import Worker, WorkerSettings


def _positive(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return number


def parser() -> argparse.ArgumentParser:
    defaults = WorkerSettings()
    p = argparse.ArgumentParser(
        prog="python -m app.worker",
        description=(
            "Run a worker process. It claims the collection jobs whose every type has a "
            "collector in MODULE:ATTRIBUTE, runs them with live progress, and hands them "
            "back with their progress on SIGTERM or SIGINT (a second signal stops at once). "
            "Jobs with a type it has no collector for are left to other workers. Bad "
            "arguments or collectors: one line, exit 2, before anything is claimed."
        ),
        epilog="app.worker.demo:COLLECTORS are demo collectors. See docs/worker.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "collectors",
        metavar="MODULE:ATTRIBUTE",
        help="a mapping of collection type to async collector, such as mymodule:COLLECTORS",
    )
    p.add_argument(
        "--concurrency",
        type=_count,
        default=defaults.concurrency,
        help="how many jobs this process runs at once",
    )
    p.add_argument(
        "--pool-size",
        type=_count,
        default=defaults.pool_size,
        help="database connections for claims, reports and ends (heartbeat and LISTEN "
        "have one each)",
    )
    p.add_argument(
        "--poll-interval",
        type=_positive,
        default=defaults.poll_interval,
        help="seconds between looks at the queue when no notification came",
    )
    p.add_argument(
        "--heartbeat",
        type=_positive,
        default=defaults.heartbeat_seconds,
        help="seconds between heartbeats",
    )
    p.add_argument(
        "--rescue-timeout",
        type=_positive,
        default=defaults.rescue_timeout,
        help="seconds without a heartbeat after which a job's worker counts as gone and "
        "the job is rescued (more than twice --heartbeat)",
    )
    p.add_argument(
        "--grace",
        type=_positive,
        default=defaults.grace_seconds,
        help="on SIGTERM, seconds running jobs may take to finish before they are handed back",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=defaults.retries,
        help="retries of a collector's own error, with backoff, before the job fails "
        "(an outage of the database never uses them)",
    )
    p.add_argument(
        "--stuck-after",
        type=_positive,
        default=defaults.stuck_after,
        help="seconds without progress, while the worker lives, that make a job stuck",
    )
    p.add_argument(
        "--stuck-action",
        type=StuckAction,
        choices=list(StuckAction),
        default=defaults.stuck_action,
        help="what to do with a stuck job: log it, fail it, or requeue it with its progress",
    )
    p.add_argument(
        "--no-listen",
        action="store_true",
        help="poll only, without LISTEN (PgBouncer in transaction mode without WORKER_LISTEN_URL)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        help="serve Prometheus metrics on this port at /metrics (needs the 'metrics' extra)",
    )
    return p


async def _main(args: argparse.Namespace) -> int:
    try:
        collectors = load_collectors(args.collectors)
    except CollectorLoadError as exc:
        raise ConfigurationError(str(exc)) from None
    if args.rescue_timeout <= 2 * args.heartbeat:
        raise ConfigurationError("--rescue-timeout must be more than twice --heartbeat")
    settings = load_settings()
    listen_url = settings.listen_url()
    url = await database_url(settings, settings.environment(), create=False)
    metrics = serve(args.metrics_port) if args.metrics_port else NO_METRICS
    worker = Worker(
        url,
        collectors,
        WorkerSettings(
            concurrency=args.concurrency,
            pool_size=args.pool_size,
            poll_interval=args.poll_interval,
            heartbeat_seconds=args.heartbeat,
            rescue_timeout=args.rescue_timeout,
            grace_seconds=args.grace,
            retries=args.retries,
            stuck_after=args.stuck_after,
            stuck_action=args.stuck_action,
            listen=not args.no_listen,
            listen_url=listen_url,
            prepared_statements=not settings.db_disable_prepared_statements,
        ),
        metrics=metrics,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    # Everything loaded so far (the libraries, the collectors' modules) lives as long as
    # the process: kept out of the collector's reach, a full collection does not walk it
    # in the middle of a pickup.
    gc.freeze()
    await worker.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log_in_one_line()
    return run_command("worker", _main(args))


if __name__ == "__main__":
    sys.exit(main())
