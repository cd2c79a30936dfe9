"""Every revision, found by walking the migrations (a new revision is covered without a
new test): up from its parent with data in every table, down, up again, nothing lost;
run twice; killed inside each of its steps and run again, it finishes with valid indexes
and validated constraints; at head, the models' schema."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL

from app.db.engine import connect
from app.db.migrate.introspect import diff_schemas
from app.db.migrate.steps import alembic_config
from app.db.settings import PROJECT_ROOT
from tests.conftest import ScratchFactory
from tests.helpers.guide import fetch
from tests.helpers.tools import alembic, steps_of, url_env
from tests.test_migrations import models_schema, version
from tests.test_schema_parity import schema_of

SCRIPT = ScriptDirectory.from_config(alembic_config())
REVISIONS = [
    (r.revision, r.down_revision or "base") for r in reversed(list(SCRIPT.walk_revisions()))
]
HEAD = SCRIPT.get_current_head()


STEPS = [(rev, parent, n) for rev, parent in REVISIONS for n in range(1, len(steps_of(rev)) + 1)]
BOOKKEEPING = ("alembic_version", "database_environment")

_COLUMNS = """
SELECT c.relname, a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atthasdef,
       (SELECT r.relname || '.' || ra.attname FROM pg_constraint f
        JOIN pg_class r ON r.oid = f.confrelid
        JOIN pg_attribute ra ON ra.attrelid = f.confrelid AND ra.attnum = f.confkey[1]
        WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.conkey[1] = a.attnum LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY c.relname, a.attnum
"""


def _value(type_name: str, formatted: str) -> str:
    length = re.search(r"\((\d+)\)", formatted)
    text = f"left(md5(random()::text), {length.group(1) if length else 32})"
    return {
        "uuid": "gen_random_uuid()",
        "text": text,
        "varchar": text,
        "int4": "(random() * 100)::int",
        "int8": "(random() * 100)::bigint",
        "bool": "true",
        "timestamptz": "now()",
        "jsonb": "'{}'::jsonb",
        "_text": "ARRAY['news']",
        "numeric": "1",
    }[type_name]


async def seed_every_table(url: URL) -> None:
    """Rows in every table, every column filled, references to rows that exist."""
    tables: dict[str, list[tuple[str, str]]] = {}
    depends: dict[str, set[str]] = {}
    for table, column, type_name, formatted, has_default, ref in await fetch(url, _COLUMNS):
        if table in BOOKKEEPING:
            continue
        tables.setdefault(table, [])
        depends.setdefault(table, set())
        if ref:
            ref_table, ref_column = ref.split(".")
            depends[table].add(ref_table)
            tables[table].append((column, f"(SELECT {ref_column} FROM {ref_table} LIMIT 1)"))
        elif not has_default:
            tables[table].append((column, _value(type_name, formatted)))
    done: set[str] = set()
    conn = await connect(url)
    try:
        while len(done) < len(tables):
            for table in sorted(tables):
                if table in done or not depends[table] - {table} <= done:
                    continue
                columns = ", ".join(c for c, _ in tables[table])
                values = ", ".join(v for _, v in tables[table])
                await conn.execute(
                    f"INSERT INTO {table} ({columns}) SELECT {values} FROM generate_series(1, 5)"
                )
                done.add(table)
    finally:
        await conn.close()


async def snapshot(url: URL, columns_of: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Each table's rows (of the given columns, else all) as one digest."""
    found: dict[str, list[str]] = {}
    for table, column, *_ in await fetch(url, _COLUMNS):
        if table not in BOOKKEEPING:
            found.setdefault(table, []).append(column)
    columns_of = found if columns_of is None else columns_of
    digests = {}
    for table, columns in columns_of.items():
        listed = ", ".join(columns)
        rows = await fetch(
            url,
            f"SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''))"
            f" FROM (SELECT {listed} FROM {table}) r",
        )
        digests[table] = rows[0][0]
    return digests


async def columns(url: URL) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table, column, *_ in await fetch(url, _COLUMNS):
        if table not in BOOKKEEPING:
            found.setdefault(table, []).append(column)
    return found


async def at_parent(scratch_db: ScratchFactory, parent: str) -> URL:
    url = await scratch_db()
    if parent != "base":
        await alembic(url, "upgrade", parent)
        await seed_every_table(url)
    return url


async def all_valid(url: URL) -> None:
    assert await fetch(url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    assert await fetch(url, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == [(0,)]


@pytest.mark.parametrize(("revision", "parent"), REVISIONS)
async def test_up_down_up_loses_nothing(
    scratch_db: ScratchFactory, revision: str, parent: str
) -> None:
    url = await at_parent(scratch_db, parent)
    before_columns = await columns(url)
    before = await snapshot(url)
    await alembic(url, "upgrade", revision)
    assert await snapshot(url, before_columns) == before
    await seed_every_table(url)  # data in what the revision added too
    if parent == "base":
        with pytest.raises(CommandError, match="refusing to downgrade"):
            await alembic(url, "downgrade", parent)
        return
    with_new_rows = await snapshot(url, before_columns)
    await alembic(url, "downgrade", parent)
    assert await version(url) == parent
    assert await snapshot(url) == with_new_rows  # every row of the parent's tables is kept
    await alembic(url, "upgrade", revision)
    assert await snapshot(url, before_columns) == with_new_rows
    await all_valid(url)


@pytest.mark.parametrize(("revision", "parent"), REVISIONS)
async def test_running_it_twice_is_harmless(
    scratch_db: ScratchFactory, revision: str, parent: str
) -> None:
    url = await at_parent(scratch_db, parent)
    await alembic(url, "upgrade", revision)
    first = await schema_of(url)
    await alembic(url, "stamp", parent)  # as if the label had not moved: every step again
    await alembic(url, "upgrade", revision)
    assert await schema_of(url) == first
    await all_valid(url)
    if revision == HEAD:
        assert diff_schemas(await models_schema(scratch_db), first) == []


def start_upgrade(url: URL, revision: str, cwd: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("APP_ENV", "DATABASE_URL")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(PROJECT_ROOT / "alembic.ini"),
            "-x",
            "lock_retry_seconds=60",
            "upgrade",
            revision,
        ],
        env={**base, **url_env(url)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("revision", "parent", "step"), STEPS)
async def test_killed_inside_each_step_it_finishes_when_run_again(
    scratch_db: ScratchFactory, tmp_path: Path, revision: str, parent: str, step: int
) -> None:
    """SIGKILL as step `step` starts (right after the previous one commits); a revision's
    first concurrent build is held inside its wait for an old snapshot, so the kill leaves
    it INVALID. (A later build is killed as it starts: a snapshot held from the start
    would hold up the revision's first build, which must finish before it.)"""
    url = await at_parent(scratch_db, parent)
    before_columns = await columns(url)
    before = await snapshot(url)
    steps = steps_of(revision)
    concurrent = "CONCURRENTLY" in steps[step - 1] and not any(
        "CONCURRENTLY" in earlier for earlier in steps[: step - 1]
    )
    holder = await connect(url, application_name="old-snapshot")
    if concurrent:
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
    process = start_upgrade(url, revision, tmp_path)
    try:
        assert process.stderr is not None
        finished, started = 0, False
        while not (started and finished >= step - 1):
            line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 60)
            assert line, f"the upgrade ended before step {step}"
            started = started or "Running upgrade" in line
            finished += "[app.db.migrate.steps]" in line and ", attempt " in line
        if concurrent:  # inside the build: waiting for the old snapshot
            while await fetch(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'collection-jobs' AND wait_event_type = 'Lock'",
            ) == [(0,)]:
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        if process.stderr is not None:
            process.stderr.close()
        await holder.close()

    await alembic(url, "upgrade", revision)
    assert await version(url) == revision
    await all_valid(url)
    assert await snapshot(url, before_columns) == before
    if revision == HEAD:
        assert diff_schemas(await models_schema(scratch_db), await schema_of(url)) == []
