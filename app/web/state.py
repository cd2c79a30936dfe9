"""What the router needs for the life of the process, made and closed by the host's
lifespan: one engine and one source of live states (one LISTEN connection)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.embedded import database_url
from app.db.engine import create_engine, create_sessionmaker
from app.db.settings import Settings, load_settings
from app.db.urls import as_url
from app.web.live import LiveJobs

STATE_KEY = "collection_jobs"


@dataclass
class WebState:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    live: LiveJobs


@asynccontextmanager
async def collection_jobs_lifespan(
    app: FastAPI,
    *,
    url: URL | str | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[WebState]:
    """Enter it in the host's own lifespan (a mounted sub-application's lifespan never
    runs). `url` defaults to DATABASE_URL, or the embedded development server. LISTEN goes
    over WORKER_LISTEN_URL when set, else over the URL itself unless it goes through
    PgBouncer in transaction mode (DB_DISABLE_PREPARED_STATEMENTS), where one poll per
    process stands in."""
    settings = settings or load_settings()
    target = as_url(url) if url is not None else None
    if target is None:
        target = await database_url(settings, settings.environment(), create=False)
    # engine_from_settings' engine, but an outage must be a 503 within seconds: no
    # waiting longer than 5 s for a connection, no statement longer than 30 s.
    engine = create_engine(
        target,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=min(settings.db_pool_timeout, 5.0),
        pool_recycle=settings.db_pool_recycle,
        connect_timeout=min(settings.db_connect_timeout, 5.0),
        disable_prepared_statements=settings.db_disable_prepared_statements,
        application_name=f"{settings.db_application_name}-web",
        command_timeout=30.0,
    )
    listen_url = settings.listen_url()
    if listen_url is None and not settings.db_disable_prepared_statements:
        listen_url = target
    live = LiveJobs(engine, listen_url=listen_url)
    state = WebState(engine, create_sessionmaker(engine), live)
    await live.start()
    restore = _end_streams_on_exit_signals(live)
    setattr(app.state, STATE_KEY, state)
    try:
        yield state
    finally:
        restore()
        await live.close()
        await engine.dispose()


def _end_streams_on_exit_signals(live: LiveJobs) -> Callable[[], None]:
    """On SIGTERM or SIGINT, end every event stream first, then do what the server does.

    A server (uvicorn, hypercorn) waits for open connections before it runs the app's
    shutdown, and an event stream never ends by itself: it would hang until its graceful
    timeout, then cancel each stream with a traceback. So the streams end at once, their
    clients reconnecting to another process. The server's own handlers are chained, and
    put back when the lifespan ends. Only from the main thread, where handlers live."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(live.end_streams)
        chained = previous[signum]
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_IGN:
            return
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)

    def restore() -> None:
        for signum, chained in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, chained)

    return restore


def web_state(request: Request) -> WebState:
    state = getattr(request.app.state, STATE_KEY, None)
    if state is None:
        raise RuntimeError(
            "app.web's router is mounted but collection_jobs_lifespan was not entered: "
            "enter it in the host app's lifespan (docs/web.md)"
        )
    assert isinstance(state, WebState)
    return state
