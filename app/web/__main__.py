"""python -m app.web [--host H] [--port P] [--root-path /prefix] [--demo]

Serve the collection jobs API alone (the platform mounts the router into its own app
instead; see docs/web.md) on DATABASE_URL or the embedded development database. `--demo`
also runs the demo collectors in this process and starts demo jobs that last tens of
seconds, a new one every few seconds, so a newcomer sees them move.
"""

from __future__ import annotations

import sys

try:  # the extra's two parts, checked before anything else: one line, not a traceback
    import fastapi  # noqa: F401
    import uvicorn
except ImportError:
    print("web: error: needs the 'web' extra: pip install '.[web]'", file=sys.stderr)
    sys.exit(2)

import argparse
import asyncio
import contextlib
import gc
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import URL

from app.db.cli import log_in_one_line, run_command
from app.db.embedded import database_url
from app.db.engine import connect, create_engine, create_sessionmaker, session_scope
from app.db.errors import ConfigurationError, DatabaseSetupError
from app.db.settings import RESETTABLE_ENVIRONMENTS, load_settings
from app.models import Analyst, CollectionType
from app.services import collection_jobs as jobs
from app.web.api import create_router
from app.web.dashboard import create_dashboard_router
from app.web.state import collection_jobs_lifespan

log = logging.getLogger("app.web")

DEMO_EVERY_SECONDS = 8.0
STREAMS_CUT_AFTER_SECONDS = 3
DEMO_ANALYST = "demo@example.com"


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return number


def _root_path(value: str) -> str:
    if value and (not value.startswith("/") or value.endswith("/") or "//" in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a path prefix such as /collection")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app.web",
        description=(
            "Serve the collection jobs dashboard (at /) and API (JSON and live events under "
            "/api, its OpenAPI page at /docs) on DATABASE_URL, or the embedded development "
            "database."
        ),
        epilog="The platform mounts app.web.create_router into its own app: docs/web.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on (0: any free)")
    p.add_argument(
        "--root-path",
        type=_root_path,
        default="",
        help="the prefix a proxy in front serves this under, such as /collection",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="run the demo collectors here and start demo jobs that last tens of seconds "
        "(development and test databases only)",
    )
    return p


def build_app(url: URL, root_path: str = "") -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with collection_jobs_lifespan(app, url=url):
            # Everything made at start-up (FastAPI's, pydantic's and SQLAlchemy's objects)
            # kept out of the collector's full passes, which otherwise stall a request now
            # and then for ~50 ms (docs/benchmarks.md).
            gc.freeze()
            yield

    app = FastAPI(
        title="Collection jobs",
        summary="Start collection jobs, watch each type's progress and estimate, act on them.",
        lifespan=lifespan,
        root_path=root_path,
    )
    app.include_router(create_router())
    app.include_router(create_dashboard_router())
    return app


async def _has_schema(url: URL) -> None:
    conn = await connect(url)
    try:
        found = await conn.fetchval("SELECT to_regclass('collection_job_attempts') IS NOT NULL")
    finally:
        await conn.close()
    if not found:
        raise DatabaseSetupError(
            "the database has no collection jobs tables: run python scripts/init_db.py "
            "(development) or alembic upgrade head"
        )


async def _demo_jobs(url: URL) -> None:
    """A demo analyst's jobs over ranges the demo collectors take tens of seconds for."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    sessions = create_sessionmaker(engine)
    try:
        async with session_scope(sessions) as session:
            analyst = await session.scalar(select(Analyst.id).where(Analyst.email == DEMO_ANALYST))
            if analyst is None:
                made = Analyst(email=DEMO_ANALYST, name="데모 분석가")
                session.add(made)
                await session.flush()
                analyst = made.id
        types = list(CollectionType)
        while True:
            end = datetime.now(UTC).replace(microsecond=0)
            days = random.randint(60, 240)
            async with session_scope(sessions) as session:
                await jobs.create_job(
                    session,
                    analyst_id=analyst,
                    collection_types=random.sample(types, random.randint(1, 3)),
                    start_date=end - timedelta(days=days),
                    end_date=end,
                )
            await asyncio.sleep(DEMO_EVERY_SECONDS)
    finally:
        await engine.dispose()


async def _main(args: argparse.Namespace) -> int:
    settings = load_settings()
    environment = settings.environment()
    if args.demo and environment not in RESETTABLE_ENVIRONMENTS:
        raise ConfigurationError(f"--demo writes demo jobs: refused with APP_ENV={environment}")
    url = await database_url(settings, environment, create=False)
    await _has_schema(url)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(url, args.root_path),
            host=args.host,
            port=args.port,
            log_level="info",
            lifespan="on",
            proxy_headers=True,
            # Event streams never end by themselves: on SIGTERM they are cut after this
            # long (their clients reconnect elsewhere), or the server would wait forever.
            timeout_graceful_shutdown=STREAMS_CUT_AFTER_SECONDS,
        ),
    )
    tasks: list[asyncio.Task[None]] = []
    worker = None
    if args.demo:
        from app.worker.demo import COLLECTORS
        from app.worker.runtime import Worker

        worker = Worker(url, COLLECTORS)
        tasks += [
            asyncio.create_task(worker.run(), name="demo worker"),
            asyncio.create_task(_demo_jobs(url), name="demo jobs"),
        ]
    try:
        await server.serve()
    finally:
        if worker is not None:
            worker.stop()
        for task in tasks[1:]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log_in_one_line()
    return run_command("web", _main(args))


if __name__ == "__main__":
    sys.exit(main())
