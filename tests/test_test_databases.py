"""The test-database machinery this suite runs on (app.testing): templates per schema
fingerprint, clones, workers that never share a database or touch the development one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Text
from sqlalchemy.engine import URL

from app.db.embedded import DATABASE_NAMES, data_folder
from app.db.embedded.test_server import data_folder_for_tests, suite_id
from app.db.settings import PROJECT_ROOT, Environment, Settings
from app.models import Base
from app.testing.databases import (
    DatabaseServer,
    clone,
    drop,
    ensure_template,
    schema_fingerprint,
    template_name,
)
from tests.helpers.guide import fetch, run_script


def changed_models() -> MetaData:
    """The models with one more column, in a copy: the real models are not touched."""
    copy = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    copy.tables["analysts"].append_column(Column("nickname", Text))
    return copy


async def databases(admin: URL, pattern: str) -> list[str]:
    rows = await fetch(
        admin, f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1"
    )
    return [r[0] for r in rows]


@pytest.fixture
async def base(test_server: DatabaseServer) -> AsyncIterator[str]:
    """A base name of the test's own; every database under it is dropped afterwards."""
    base = f"{test_server.base}_t{uuid.uuid4().hex[:8]}"
    yield base
    for name in await databases(test_server.admin_url, f"{base}%"):
        await run_script(test_server.admin_url, f'ALTER DATABASE "{name}" IS_TEMPLATE false')
        await drop(test_server.admin_url, name)


async def test_a_template_is_reused_until_the_models_change(
    test_server: DatabaseServer, base: str
) -> None:
    admin = test_server.admin_url
    first = await ensure_template(admin, base, Base.metadata)
    again = await ensure_template(admin, base, Base.metadata)
    assert first.built and not again.built and again.name == first.name
    assert schema_fingerprint(changed_models()) != schema_fingerprint(Base.metadata)

    changed = await ensure_template(admin, base, changed_models())
    assert changed.built and changed.name != first.name
    assert await databases(admin, f"{base}\\_tpl\\_%") == [changed.name]  # stale dropped

    url = await clone(admin, changed.name, f"{base}_clone")
    columns = await fetch(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'analysts'"
    )
    assert ("nickname",) in columns  # the tests see the change


async def test_a_half_built_template_is_never_used(test_server: DatabaseServer, base: str) -> None:
    admin = test_server.admin_url
    name = template_name(base, schema_fingerprint(Base.metadata))
    # What a build killed half-way leaves: a database under the build's temporary name,
    # and one with the final name that was never marked a template.
    await run_script(admin, f'CREATE DATABASE "{name}_b1"')
    await run_script(admin, f'CREATE DATABASE "{name}"')
    template = await ensure_template(admin, base, Base.metadata)
    assert template.built and template.name == name
    tables = await fetch(
        admin.set(database=name),
        "SELECT count(*) FROM pg_tables WHERE tablename = 'collection_jobs'",
    )
    assert tables == [(1,)]
    assert await databases(admin, f"{base}%") == [name]


async def test_concurrent_runs_build_one_template(test_server: DatabaseServer, base: str) -> None:
    admin = test_server.admin_url
    results = await asyncio.gather(*(ensure_template(admin, base, Base.metadata) for _ in range(4)))
    assert sum(r.built for r in results) == 1
    assert len({r.name for r in results}) == 1


INNER_TEST = """
from sqlalchemy import text

from app.db.settings import load_settings


async def test_{n}(engine, database_of_its_own):
    async with engine.connect() as conn:
        name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
        dev = (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'collection_dev'"
            " AND application_name = 'collection-jobs-tests'"
        ))).scalar_one()
    own = await database_of_its_own()
    unset = load_settings().url() is None  # the .env's DATABASE_URL never reaches the code
    with open("{out}", "a") as f:
        f.write(f"{{name}} {{own.database}} {{dev}} {{unset}}\\n")
"""


def test_a_suite_on_the_same_server_and_name_reads_its_env_and_shares_no_database(
    test_server: DatabaseServer, tmp_path: Path
) -> None:
    out = tmp_path / "seen.txt"
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["app.testing.plugin"]\n')
    (tmp_path / "pytest.ini").write_text(
        textwrap.dedent(
            """\
            [pytest]
            asyncio_mode = auto
            asyncio_default_fixture_loop_scope = session
            asyncio_default_test_loop_scope = session
            """
        )
    )
    tests = "".join(INNER_TEST.format(n=n, out=out) for n in range(8))
    (tmp_path / "test_inner.py").write_text(tests)
    # The same server and database name as this run: the suites' ids keep them apart.
    name = DATABASE_NAMES[Environment.TEST]
    inner_url = test_server.admin_url.set(database=name)
    inner_base = f"{name}_{suite_id(tmp_path)}"
    assert inner_base != test_server.base
    # Both read from the suite's .env, as the settings are everywhere.
    (tmp_path / ".env").write_text(
        f"TEST_DATABASE_URL={inner_url.render_as_string(hide_password=False)}\n"
        "DATABASE_URL=postgresql://app@db.invalid/production\nAPP_ENV=production\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "APP_ENV")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len(rows) == 8
    workers = {name for name, _, _, _ in rows}
    assert workers == {f"{inner_base}_gw0", f"{inner_base}_gw1"}
    owns = [own for _, own, _, _ in rows]
    assert len(set(owns)) == 8 and not set(owns) & workers
    dev = DATABASE_NAMES[Environment.DEVELOPMENT]
    assert dev not in workers | set(owns)
    assert {count for _, _, count, _ in rows} == {"0"}  # no test session in it, even on one server
    assert {unset for _, _, _, unset in rows} == {"True"}


def test_the_embedded_test_server_is_not_the_development_server(
    test_settings: Settings,
) -> None:
    if test_settings.test_database_url is not None:
        pytest.skip("TEST_DATABASE_URL names the test server")
    assert data_folder_for_tests(test_settings, PROJECT_ROOT) != data_folder(test_settings)
