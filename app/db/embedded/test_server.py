"""The embedded test server: one per test suite, in memory where the machine allows, and
never left behind.

Its data lives in `/dev/shm` (RAM, fsync off: thrown away anyway), which makes cloning
test databases fast. RAM is precious, so nothing stays there for good: each folder records
the suite it serves; a server idle for `EMBEDDED_TEST_IDLE_SECONDS` is stopped and its data
removed by a small watcher process; `--test stop` removes what it made; and every start
clears the folders of suites that no longer exist (a deleted checkout).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import admin_url, data_folder, server, server_url
from app.db.errors import ConfigurationError
from app.db.settings import Settings

RAM_FOLDER = Path("/dev/shm")
FOLDER_PREFIX = "collection-jobs-"
SUITE_FILE = "suite"
"""In each in-memory folder: the path of the suite it serves, to know when it is gone."""
WATCHER_LOCK = "idle-watcher.lock"
SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""The test server's data is in memory and thrown away: durability buys nothing there."""
_RECORD_GRACE_SECONDS = 60
"""A folder without its record younger than this may be one being made right now."""
_ROOT_MARKERS = ("pyproject.toml", "pytest.ini", "tox.ini", "setup.cfg")


def suite_root(start: Path | None = None) -> Path:
    """The suite a command run from `start` (the current folder) means: the nearest folder
    holding a project file (`pyproject.toml`, `pytest.ini`, ...), as pytest finds its
    root, else `start` itself."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in _ROOT_MARKERS):
            return folder
    return start


def suite_id(suite: Path) -> str:
    """A short, stable id of a suite's folder: its databases' and data folder's names."""
    return hashlib.sha256(str(suite.resolve()).encode()).hexdigest()[:6]


def _in_memory() -> bool:
    return RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK)


def data_folder_for_tests(settings: Settings, suite: Path, *, create: bool = False) -> Path:
    """The test server's data folder: EMBEDDED_TEST_PGDATA, else a folder in memory
    (`/dev/shm`, one per suite), else the development server's own folder.

    Only `create` makes the in-memory folder (and records its suite): commands that stop
    or read create nothing.
    """
    if settings.embedded_test_pgdata is not None:
        path = settings.embedded_test_pgdata.expanduser().absolute()
        if not path.parent.is_dir():
            raise ConfigurationError(
                f"EMBEDDED_TEST_PGDATA's parent folder {path.parent} does not exist"
            )
        return path.parent.resolve() / path.name
    if not _in_memory():
        return data_folder(settings, create=create)
    folder = RAM_FOLDER / f"{FOLDER_PREFIX}{hashlib.sha256(str(suite).encode()).hexdigest()[:12]}"
    if create:
        folder.mkdir(mode=0o755, exist_ok=True)
        (folder / SUITE_FILE).write_text(str(suite), encoding="utf-8")
    return folder / "pgdata"


def server_url_for_tests(settings: Settings, suite: Path) -> URL:
    """Start the suite's embedded test server if it is not running; return its admin URL.

    A server of its own: cloning test databases there is fast, and nothing the tests do
    can reach the development server's data. Folders of suites that no longer exist are
    cleared first; an in-memory server gets a watcher that removes it once idle.
    """
    if _in_memory():
        clear_orphans()
    pgdata = data_folder_for_tests(settings, suite, create=True)
    if pgdata == data_folder(settings):
        return server_url(settings)
    running = server.ensure_running(
        pgdata, setting="EMBEDDED_TEST_PGDATA", server_settings=SERVER_SETTINGS
    )
    if pgdata.is_relative_to(RAM_FOLDER) and settings.embedded_test_idle_seconds > 0:
        _start_watcher(pgdata, settings.embedded_test_idle_seconds)
    return admin_url(running)


def stop_and_remove(pgdata: Path) -> bool:
    """Stop the test server; an in-memory one's data is removed too. False if none ran."""
    stopped = server.stop(pgdata) if pgdata.exists() else False
    if pgdata.is_relative_to(RAM_FOLDER):
        shutil.rmtree(pgdata.parent, ignore_errors=True)
    return stopped


def clear_orphans() -> list[Path]:
    """Remove the in-memory folders whose suite no longer exists (its checkout was deleted),
    and those of earlier versions that recorded no suite and whose server is not running."""
    cleared = []
    for folder in RAM_FOLDER.glob(f"{FOLDER_PREFIX}*"):
        with contextlib.suppress(OSError, server.EmbeddedServerError):
            record = folder / SUITE_FILE
            if record.is_file():
                if Path(record.read_text(encoding="utf-8")).exists():
                    continue
            elif (
                time.time() - folder.stat().st_mtime < _RECORD_GRACE_SECONDS
                or server.read_running(folder / "pgdata") is not None
            ):
                continue  # being made right now, or an earlier version's running server
            stop_and_remove(folder / "pgdata")
            cleared.append(folder)
    return cleared


def _start_watcher(pgdata: Path, idle_seconds: float) -> None:
    """Start the idle watcher of `pgdata` unless one is watching it already."""
    if _watcher_running(pgdata):
        return
    subprocess.run(  # returns at once: the watcher detaches (see main)
        [
            sys.executable,
            "-m",
            "app.db.embedded.test_server",
            "watch",
            str(pgdata),
            str(idle_seconds),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the test run, and is not stopped by its Ctrl-C
        cwd="/",
        timeout=60,
        check=False,
    )


def _watcher_running(pgdata: Path) -> bool:
    lock = pgdata.parent / WATCHER_LOCK
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def client_count(running: server.Running) -> int:
    """Client sessions of the server: its processes titled `[local]` (it listens on a
    Unix socket only), counted without connecting, so the watcher is never a client."""
    import psutil

    count = 0
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(running.pid).children():
            with contextlib.suppress(psutil.Error):
                count += "[local]" in " ".join(child.cmdline())
    return count


def watch(pgdata: Path, idle_seconds: float) -> None:
    """Stop the server on `pgdata` and remove its data once it has had no client for
    `idle_seconds`; return when it is gone (stopped by anyone). One watcher per server."""
    fd = os.open(pgdata.parent / WATCHER_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another watcher has it
    check_every = min(max(idle_seconds / 4, 0.2), 30.0)
    last_busy = time.monotonic()
    while True:
        time.sleep(check_every)
        running = server.read_running(pgdata)
        if running is None:
            return
        if client_count(running) > 0:
            last_busy = time.monotonic()
        elif time.monotonic() - last_busy >= idle_seconds:
            _stop_if_still_idle(pgdata)
            return


def _stop_if_still_idle(pgdata: Path) -> None:
    """Stop and empty the data folder, under the same lock as a start, unless a client
    came in meanwhile. The folder itself stays, empty: a start waiting on the lock then
    makes a new server in it."""
    with server.locked(pgdata):
        running = server.read_running(pgdata)
        if running is not None and client_count(running) > 0:
            return
        if running is not None:
            server.stop_locked(pgdata)
        for item in pgdata.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("action", choices=["watch"])
    parser.add_argument("pgdata", type=Path)
    parser.add_argument("idle_seconds", type=float)
    args = parser.parse_args(argv)
    if os.fork() > 0:  # detach: the starter waits for this process only, never a zombie
        os._exit(0)
    with contextlib.suppress(Exception, KeyboardInterrupt):  # a watcher never prints
        watch(args.pgdata, args.idle_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
