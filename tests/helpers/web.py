"""The API mounted into a host app as the platform mounts it, for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.engine import URL

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.testing.factories import make_analyst
from app.web import (
    Access,
    collection_jobs_lifespan,
    create_dashboard_router,
    create_router,
    full_access,
)
from tests.helpers.tools import url_env
from tests.helpers.workers import STARTED


def host_app(
    prefix: str = "", access: Callable[..., Any] = full_access, **lifespan: Any
) -> tuple[FastAPI, Callable[[FastAPI], contextlib.AbstractAsyncContextManager[Any]]]:
    """A host app with the router under `prefix`, and its lifespan (which the host
    composes from ours)."""

    @contextlib.asynccontextmanager
    async def host_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with collection_jobs_lifespan(app, **lifespan):
            yield

    app = FastAPI(lifespan=host_lifespan)
    app.include_router(create_router(access=access), prefix=prefix)
    app.include_router(create_dashboard_router(access=access), prefix=prefix)
    return app, host_lifespan


@contextlib.asynccontextmanager
async def api_client(
    url: URL, prefix: str = "", access: Callable[..., Any] = full_access, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the host app, in process (ASGI), its lifespan entered."""
    app, lifespan = host_app(prefix, access, url=url, **options)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://host{prefix}"
        ) as client:
            yield client


async def new_analyst(url: URL) -> uuid.UUID:
    engine = create_engine(url, null_pool=True)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return (await make_analyst(session)).id
    finally:
        await engine.dispose()


def job_request(
    analyst_id: uuid.UUID, types: list[str] | None = None, days: int = 3
) -> dict[str, Any]:
    end = datetime(2026, 11, 30, tzinfo=UTC)
    return {
        "analyst_id": str(analyst_id),
        "collection_types": types or ["news", "disclosure"],
        "start_date": (end - timedelta(days=days)).isoformat(),
        "end_date": end.isoformat(),
    }


def only(actions: set[str], analyst_id: uuid.UUID | None = None) -> Callable[[], Access]:
    from app.web import Action

    def resolver() -> Access:
        return Access(frozenset(Action(a) for a in actions), analyst_id)

    return resolver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def web_server(
    url: URL, *args: str, env: dict[str, str] | None = None, prefix: str = ""
) -> AsyncIterator[str]:
    """`python -m app.web` on a free port (or, with `prefix`, a host app that includes the
    routers under it, `tests.web_host`); its base URL, prefix included, once it answers."""
    port = free_port()
    if prefix:
        command = ["-m", "uvicorn", "tests.web_host:app", "--port", str(port), *args]
    else:
        command = ["-m", "app.web", "--port", str(port), *args]
    process = subprocess.Popen(
        [sys.executable, *command],
        env={
            **os.environ,
            **url_env(url),
            "PYTHONPATH": os.getcwd(),
            "WEB_HOST_PREFIX": prefix,
            **(env or {}),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    STARTED.append(process)
    base = f"http://127.0.0.1:{port}{prefix}"
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.communicate()[0]
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{base}/api/queue")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "the server did not answer in 60 s"
                await asyncio.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
        assert "Traceback" not in output, output
