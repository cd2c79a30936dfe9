"""The three job runners that `benchmarks/worker_peers.py` measures, one module each.

Each module has the job function its worker processes run (it records when it started,
and when it saw a cancel, through `record`) and a `Peer`: how to set up its schema, insert
jobs, cancel one and start a worker process, each as that runner's documentation says.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import URL

_fd: int | None = None


def record(kind: str, key: object) -> None:
    """One line, `kind key time pid`, in this process's file under $BENCH_DIR: one
    unbuffered append, the same cost for every runner."""
    global _fd
    if _fd is None:
        path = Path(os.environ["BENCH_DIR"]) / f"{os.getpid()}.log"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(_fd, f"{kind} {key} {time.time()} {os.getpid()}\n".encode())


async def job_body(key: object) -> None:
    """What every runner's job does: record its start; in `hold` mode, wait until
    cancelled (recording that) or killed."""
    record("start", key)
    if os.environ.get("BENCH_MODE") != "hold":
        return
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        record("cancel", key)
        raise


@dataclass(frozen=True)
class Settings:
    concurrency: int
    """Jobs at once per worker process, the same for every runner."""


class Peer(Protocol):
    name: str
    recovery: str
    """How it gets a killed worker's job running again, in a few words."""

    async def set_up(self, url: URL) -> None: ...

    async def insert_many(self, url: URL, count: int) -> None: ...

    async def inserter(self, url: URL) -> Inserter: ...

    def worker_argv(self, settings: Settings) -> list[str]: ...


class Inserter(Protocol):
    """A connection held open to insert jobs one at a time and cancel them."""

    async def insert(self) -> str:
        """Insert and commit one job; its key, as the job function records it."""
        ...

    async def cancel(self, key: str) -> None: ...

    async def close(self) -> None: ...


def libpq_url(url: URL) -> str:
    """The server's URL for the peers' own drivers (plain `postgresql://`)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
