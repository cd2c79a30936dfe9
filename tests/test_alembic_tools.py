"""The standard tools teams point at Alembic revisions work on ours: `alembic check` on a
database at head finds nothing, also when a harness (pytest-alembic) hands `env.py` a
`target_metadata` of None; `upgrade head --sql` needs no database; the floor below the
baseline is a `NotImplementedError`, the convention pytest-alembic reads as a deliberate
end of the downgrade walk."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.util import CommandError

from app.db.engine import create_engine
from app.db.migrate.steps import IrreversibleMigrationError, alembic_config
from app.db.settings import Environment
from tests.conftest import ScratchFactory
from tests.helpers.guide import fetch
from tests.helpers.tools import alembic


@pytest.mark.parametrize("handed", ["nothing", "None, as pytest-alembic hands it"])
async def test_alembic_check_on_a_database_at_head_finds_nothing(
    scratch_db: ScratchFactory, handed: str
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", "head")
    config = alembic_config()
    config.attributes["url"] = url
    config.attributes["environment"] = Environment.TEST
    if handed != "nothing":
        config.attributes["target_metadata"] = None
    await asyncio.to_thread(command.check, config)  # raises when anything differs


def test_upgrade_head_as_sql_needs_no_database() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APP_ENV")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE IF NOT EXISTS collection_jobs (" in result.stdout
    assert "CREATE TABLE IF NOT EXISTS collection_job_attempts (" in result.stdout


async def test_the_floor_below_the_baseline_is_a_not_implemented_error(
    scratch_db: ScratchFactory,
) -> None:
    assert issubclass(IrreversibleMigrationError, NotImplementedError)
    url = await scratch_db()
    await alembic(url, "upgrade", "head")
    with pytest.raises(CommandError, match="refusing to downgrade below") as refused:
        await alembic(url, "downgrade", "base")
    assert isinstance(refused.value, NotImplementedError)


async def test_a_handed_engine_is_migrated_as_the_caller_asks(scratch_db: ScratchFactory) -> None:
    """pytest-alembic and Alembic's cookbook hand env.py an engine in
    `config.attributes["connection"]`: that database is migrated, not the settings' one."""
    url = await scratch_db()
    engine = create_engine(url, null_pool=True)
    try:
        config = alembic_config()
        config.attributes["connection"] = engine
        config.attributes["environment"] = Environment.TEST
        await asyncio.to_thread(command.upgrade, config, "head")
        config.attributes["connection"] = "postgresql://elsewhere"
        with pytest.raises(CommandError, match="is a str, not a Connection"):
            await asyncio.to_thread(command.upgrade, config, "head")
    finally:
        await engine.dispose()
    assert await fetch(url, "SELECT to_regclass('collection_job_attempts') IS NOT NULL") == [
        (True,)
    ]
