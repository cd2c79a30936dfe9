"""init_db: what it builds, and every refusal, each leaving the existing rows intact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from app.db.engine import connect, create_engine
from app.db.errors import EnvironmentRefusedError, MarkerRefusedError, NotConfirmedError
from app.db.reset.init_db import INIT_DB_LOCK_KEY, Phase, ResetPlan, init_db
from app.db.settings import PROJECT_ROOT, Environment
from app.models import Base, JobStatus
from tests.conftest import RoleFactory, ScratchFactory
from tests.helpers import tools
from tests.helpers.guide import BASELINE_SQL, fetch, run_script
from tests.helpers.password_server import PASSWORD
from tests.helpers.tools import assert_secret_hidden, run_tool, url_env

INIT_DB = str(PROJECT_ROOT / "scripts" / "init_db.py")
MODEL_TABLES = sorted(Base.metadata.tables)
"""Whatever the models hold now: the guide's three tables and any added since."""
ALL_TABLES = sorted(["alembic_version", "database_environment", *MODEL_TABLES])


async def reset(url: URL, **kwargs: object) -> object:
    engine = create_engine(url, null_pool=True)
    try:
        return await init_db(engine, **kwargs)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def row_counts(url: URL) -> dict[str, int]:
    counts = {}
    for table in MODEL_TABLES:
        rows = await fetch(url, f"SELECT count(*) FROM {table}")
        counts[table] = rows[0][0]
    return counts


async def public_tables(url: URL) -> list[str]:
    rows = await fetch(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    )
    return [r[0] for r in rows]


@pytest.fixture
async def seeded(scratch_db: ScratchFactory) -> AsyncIterator[tuple[URL, dict[str, int]]]:
    """A test database set up by init_db with the sample data, and its row counts."""
    url = await scratch_db()
    await reset(url, environment=Environment.TEST, seed=True)
    yield url, await row_counts(url)


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run scripts/init_db.py as a user would, with no terminal on stdin."""
    return run_tool(INIT_DB, *args, env=env, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    tools.assert_one_line_error(result, code, text, prefix="init_db: error: ")


# --- what it builds ---------------------------------------------------------------------


async def test_running_twice_leaves_exactly_the_models_tables(
    seeded: tuple[URL, dict[str, int]],
) -> None:
    url, _ = seeded
    await run_script(
        url, "CREATE TABLE stale_leftover (id int); CREATE TYPE stale_kind AS ENUM ('x')"
    )

    await reset(url, environment=Environment.TEST)

    assert await public_tables(url) == ALL_TABLES
    assert await fetch(url, "SELECT 1 FROM pg_type WHERE typname = 'stale_kind'") == []
    assert await row_counts(url) == dict.fromkeys(MODEL_TABLES, 0)
    marker = await fetch(url, "SELECT environment, set_by FROM database_environment")
    assert [tuple(r) for r in marker] == [("test", "init_db")]


async def test_seed_has_every_status_and_logs_with_and_without_a_job(
    seeded: tuple[URL, dict[str, int]],
) -> None:
    url, counts = seeded
    statuses = {r[0] for r in await fetch(url, "SELECT status FROM collection_jobs")}
    assert statuses == {s.value for s in JobStatus}
    running = await fetch(
        url, "SELECT progress, overall_progress FROM collection_jobs WHERE status = 'running'"
    )
    assert running[0][1] not in ("0.0", None) and running[0][0] != "{}"
    with_job, without_job = (
        await fetch(
            url,
            "SELECT count(collection_job_id), "
            "count(*) - count(collection_job_id) FROM data_collection_logs",
        )
    )[0]
    assert with_job > 0 and without_job > 0
    assert counts["analysts"] >= 2


async def test_confirmation_is_asked_only_when_there_is_something_to_lose(
    scratch_db: ScratchFactory,
) -> None:
    asked: list[ResetPlan] = []

    def confirm(plan: ResetPlan) -> bool:
        asked.append(plan)
        return True

    url = await scratch_db()
    await reset(url, environment=Environment.TEST, confirm=confirm)
    assert asked == []
    await reset(url, environment=Environment.TEST, confirm=confirm)
    assert asked == [ResetPlan(marker="test", user_tables=len(ALL_TABLES))]


async def test_declining_changes_nothing(seeded: tuple[URL, dict[str, int]]) -> None:
    url, counts = seeded
    with pytest.raises(NotConfirmedError):
        await reset(url, environment=Environment.TEST, confirm=lambda plan: False)
    assert await row_counts(url) == counts


async def test_concurrent_runs_are_serialised_by_the_advisory_lock(
    scratch_db: ScratchFactory,
) -> None:
    url = await scratch_db()
    holder = await connect(url)
    await holder.execute("SELECT pg_advisory_lock($1)", INIT_DB_LOCK_KEY)
    runs = [
        asyncio.create_task(reset(url, environment=Environment.TEST, force=True)) for _ in range(2)
    ]
    await asyncio.sleep(0.5)
    assert not any(run.done() for run in runs), "init_db ran while another held the lock"
    await holder.execute("SELECT pg_advisory_unlock($1)", INIT_DB_LOCK_KEY)
    await holder.close()
    await asyncio.gather(*runs)
    assert await public_tables(url) == ALL_TABLES


# --- refusals, through the function ---------------------------------------------------


@pytest.mark.parametrize("environment", [Environment.STAGING, Environment.PRODUCTION])
async def test_refuses_outside_development_and_test(
    seeded: tuple[URL, dict[str, int]], environment: Environment
) -> None:
    url, counts = seeded
    with pytest.raises(EnvironmentRefusedError):
        await reset(url, environment=environment, force=True)
    assert await row_counts(url) == counts


@pytest.mark.parametrize("marker", ["staging", "production"])
async def test_a_protected_marker_is_never_wiped_even_with_force(
    seeded: tuple[URL, dict[str, int]], marker: str
) -> None:
    url, counts = seeded
    await run_script(url, f"UPDATE database_environment SET environment = '{marker}'")
    with pytest.raises(MarkerRefusedError, match="never wiped"):
        await reset(url, environment=Environment.TEST, force=True)
    assert await row_counts(url) == counts


async def test_another_environments_database_needs_force(
    seeded: tuple[URL, dict[str, int]],
) -> None:
    url, counts = seeded
    await run_script(url, "UPDATE database_environment SET environment = 'development'")
    with pytest.raises(MarkerRefusedError, match="marked 'development' but APP_ENV is 'test'"):
        await reset(url, environment=Environment.TEST)
    assert await row_counts(url) == counts
    await reset(url, environment=Environment.TEST, force=True)
    assert await row_counts(url) == dict.fromkeys(MODEL_TABLES, 0)


async def test_tables_without_a_marker_need_force(scratch_db: ScratchFactory) -> None:
    url = await scratch_db()
    await run_script(
        url, BASELINE_SQL.read_text(), "INSERT INTO analysts (email, name) VALUES ('a@x', 'A')"
    )
    with pytest.raises(MarkerRefusedError, match="origin is unknown"):
        await reset(url, environment=Environment.TEST)
    assert (await fetch(url, "SELECT count(*) FROM analysts"))[0][0] == 1
    await reset(url, environment=Environment.TEST, force=True)
    assert await public_tables(url) == ALL_TABLES


# --- refusals, through the command line: one line, documented exit code ---------------


@pytest.mark.parametrize("app_env", ["staging", "PRODUCTION"])
async def test_cli_refuses_staging_and_production(
    seeded: tuple[URL, dict[str, int]], app_env: str, tmp_path: Path
) -> None:
    url, counts = seeded
    result = cli("--yes", "--force", env=url_env(url, app_env), cwd=tmp_path)
    assert_one_line_error(result, 3, "init_db is for development and test only")
    assert await row_counts(url) == counts


async def test_cli_wants_app_env_with_a_database_url(
    seeded: tuple[URL, dict[str, int]], tmp_path: Path
) -> None:
    url, counts = seeded
    result = cli("--yes", env=url_env(url, app_env=None), cwd=tmp_path)
    assert_one_line_error(result, 2, "set APP_ENV explicitly")
    assert await row_counts(url) == counts


async def test_cli_refuses_a_production_marker_even_with_force(
    seeded: tuple[URL, dict[str, int]], tmp_path: Path
) -> None:
    url, counts = seeded
    await run_script(url, "UPDATE database_environment SET environment = 'production'")
    result = cli("--yes", "--force", env=url_env(url), cwd=tmp_path)
    assert_one_line_error(result, 4, "marked 'production'")
    assert await row_counts(url) == counts


async def test_cli_without_terminal_or_yes_refuses(
    seeded: tuple[URL, dict[str, int]], tmp_path: Path
) -> None:
    url, counts = seeded
    result = cli(env=url_env(url), cwd=tmp_path)
    assert_one_line_error(result, 5, "no terminal to ask; pass --yes")
    assert await row_counts(url) == counts


async def test_cli_resets_with_yes_and_shows_the_target_masked(
    seeded: tuple[URL, dict[str, int]], tmp_path: Path
) -> None:
    url, _ = seeded
    secret = str(url.password or "Hq7!zW-pass")  # a trusting server ignores it
    result = cli("--yes", env=url_env(url.set(password=secret)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"database '{url.database}'" in result.stdout
    assert_secret_hidden(result.stdout + result.stderr, secret)
    assert await row_counts(url) == dict.fromkeys(MODEL_TABLES, 0)


def test_cli_reports_an_unreachable_server(tmp_path: Path) -> None:
    url = URL.create("postgresql", "app", "pw-unreachable", "127.0.0.1", 1, "nowhere")
    result = cli("--yes", env=url_env(url), cwd=tmp_path)
    assert_one_line_error(result, 6, "cannot connect to database 'nowhere' on 127.0.0.1:1")
    assert_secret_hidden(result.stdout + result.stderr, "pw-unreachable")


def test_cli_reports_a_bad_url_without_echoing_it(tmp_path: Path) -> None:
    result = cli(
        "--yes",
        env={"DATABASE_URL": "mysql://app:pw-bad-url@db/x", "APP_ENV": "test"},
        cwd=tmp_path,
    )
    assert_one_line_error(result, 2, "DATABASE_URL must start with one of")
    assert_secret_hidden(result.stdout + result.stderr, "pw-bad-url")


def test_cli_reports_a_wrong_password(secured_server: URL, tmp_path: Path) -> None:
    wrong = secured_server.set(password="Wr0ng-Kz8q")
    result = cli("--yes", env=url_env(wrong), cwd=tmp_path)
    assert_one_line_error(result, 7, "authentication failed for database 'postgres'")
    assert_secret_hidden(result.stdout + result.stderr, "Wr0ng-Kz8q")
    assert_secret_hidden(result.stdout + result.stderr, PASSWORD)


def test_cli_works_with_the_right_password(secured_server: URL, tmp_path: Path) -> None:
    result = cli("--yes", env=url_env(secured_server), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_secret_hidden(result.stdout + result.stderr, PASSWORD)


# --- interruptions and waits: say only what is known, and whom it waits for -------------


# A shell starts background jobs with SIGINT ignored, and children inherit that: run
# init_db with SIGINT's default handler, as from a terminal, whatever started the tests.
_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def start_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("APP_ENV", "DATABASE_URL")}
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_CTRL_C, INIT_DB, *args],
        env={**base, **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_for_session(url: URL, condition: str, timeout: float = 60) -> int:
    """The pid of init_db's session once `condition` holds for it in pg_stat_activity."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        rows = await fetch(
            url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'collection-jobs' "
            f"AND datname = current_database() AND {condition}",
        )
        if rows:
            return int(rows[0][0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no init_db session with {condition} within {timeout}s")


async def test_a_waiting_reset_names_the_session_it_waits_for_and_an_interrupt_keeps_rows(
    seeded: tuple[URL, dict[str, int]], tmp_path: Path
) -> None:
    url, counts = seeded
    holder = await connect(url, application_name="open-report")
    await holder.execute("BEGIN; SELECT count(*) FROM analysts")  # holds a lock on analysts
    holder_pid = holder.get_server_pid()
    process = start_cli("--yes", env=url_env(url), cwd=tmp_path)
    try:
        await wait_for_session(url, "wait_event_type = 'Lock'")
        assert process.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 60)
        assert f"init_db: waiting for pid {holder_pid} (open-report, idle in transaction" in line
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        process.kill()
        await holder.close()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == f"init_db: {Phase.RESETTING.value}"
    assert "Traceback" not in stderr
    assert await row_counts(url) == counts


SLOW_COMMIT = """
CREATE SCHEMA hooks;
CREATE FUNCTION hooks.slow_commit() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;
CREATE FUNCTION hooks.on_create() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
               WHERE object_identity = 'public.database_environment') THEN
        CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON public.database_environment
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hooks.slow_commit();
    END IF;
END $$;
CREATE EVENT TRIGGER slow_commit ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION hooks.on_create();
"""
"""A deferred trigger that makes COMMIT itself take a minute: an interrupt lands in it."""


async def test_an_interrupt_during_the_commit_does_not_claim_nothing_was_committed(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await run_script(url, SLOW_COMMIT)
    process = start_cli("--yes", env=url_env(url), cwd=tmp_path)
    try:
        await wait_for_session(url, "wait_event = 'PgSleep'")
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == f"init_db: {Phase.COMMITTING.value}"
    assert "nothing" not in stderr


async def test_force_as_a_role_that_does_not_own_the_tables_is_one_line(
    seeded: tuple[URL, dict[str, int]], limited_role: RoleFactory, tmp_path: Path
) -> None:
    url, counts = seeded
    role_url = await limited_role(url)
    result = cli("--yes", "--force", env=url_env(role_url), cwd=tmp_path)
    assert_one_line_error(result, 11, "must be owner of")
    assert await row_counts(url) == counts
