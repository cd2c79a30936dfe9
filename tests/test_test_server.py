"""The in-memory test server leaves nothing behind: `--test stop` on a suite that never ran
creates nothing, and removes what it made; an idle server is stopped and its data removed
(a connected client keeps it); a suite that no longer exists has its folder cleared."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from app.db.embedded import admin_url, server
from app.db.embedded.test_server import RAM_FOLDER, data_folder_for_tests
from app.db.engine import connect
from app.db.settings import Settings
from tests.helpers.tools import run_tool

pytestmark = pytest.mark.skipif(
    not (RAM_FOLDER.is_dir() and os.access(RAM_FOLDER, os.W_OK)), reason="no /dev/shm here"
)
EMBEDDED = ("-m", "app.db.embedded", "--test")


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Path]:
    """A suite's folder of its own (as another team's project would be)."""
    folder = tmp_path / "other suite"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    yield folder
    pgdata = data_folder_for_tests(Settings(_env_file=None), folder)
    server.remove(pgdata)
    shutil.rmtree(pgdata.parent, ignore_errors=True)


def in_memory_folder(suite: Path) -> Path:
    return data_folder_for_tests(Settings(_env_file=None), suite).parent


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_stop_of_a_suite_that_never_ran_creates_nothing(suite: Path) -> None:
    result = run_tool(*EMBEDDED, "stop", env={}, cwd=suite)
    assert result.returncode == 0 and result.stdout.strip() == "not running", result.stderr
    assert not in_memory_folder(suite).exists()


def test_stop_removes_what_start_made(suite: Path) -> None:
    started = run_tool(*EMBEDDED, "start", env={}, cwd=suite)
    assert started.returncode == 0, started.stderr
    assert (in_memory_folder(suite) / "pgdata" / "PG_VERSION").exists()
    stopped = run_tool(*EMBEDDED, "stop", env={}, cwd=suite)
    assert stopped.stdout.strip() == "stopped", stopped.stderr
    assert not in_memory_folder(suite).exists()


async def test_an_idle_server_is_stopped_and_its_data_removed_but_not_while_a_client_is_on(
    suite: Path,
) -> None:
    env = {"EMBEDDED_TEST_IDLE_SECONDS": "2"}
    started = run_tool(*EMBEDDED, "start", env=env, cwd=suite)
    assert started.returncode == 0, started.stderr
    pgdata = in_memory_folder(suite) / "pgdata"
    running = server.read_running(pgdata)
    assert running is not None

    conn = await connect(admin_url(running))
    try:
        time.sleep(4)  # twice the idle time, with a client connected
        assert server.read_running(pgdata) is not None
    finally:
        await conn.close()

    assert wait_for(lambda: server.read_running(pgdata) is None, 15)
    assert wait_for(lambda: not any(pgdata.iterdir()), 5)
    # The next start makes a new server in the emptied folder.
    again = run_tool(*EMBEDDED, "start", env={"EMBEDDED_TEST_IDLE_SECONDS": "0"}, cwd=suite)
    assert again.returncode == 0, again.stderr
    assert server.read_running(pgdata) is not None


def test_the_folder_of_a_suite_that_no_longer_exists_is_cleared_by_the_next_start(
    suite: Path, tmp_path: Path
) -> None:
    env = {"EMBEDDED_TEST_IDLE_SECONDS": "0"}
    gone = tmp_path / "deleted checkout"
    gone.mkdir()
    (gone / "pyproject.toml").write_text("[project]\nname = 'gone'\n")
    assert run_tool(*EMBEDDED, "start", env=env, cwd=gone).returncode == 0
    orphan = in_memory_folder(gone)
    running = server.read_running(orphan / "pgdata")
    assert running is not None
    shutil.rmtree(gone)

    assert run_tool(*EMBEDDED, "start", env=env, cwd=suite).returncode == 0
    assert not orphan.exists()
    assert wait_for(lambda: not psutil.pid_exists(running.pid), 5)  # its server stopped
