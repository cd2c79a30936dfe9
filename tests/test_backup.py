"""scripts/backup_db.py: a listed custom-format dump, and the refusal of old servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.db.settings import PROJECT_ROOT
from scripts.backup_db import ServerTooOldError, _pg_tool, check_server_version
from tests.conftest import ScratchFactory
from tests.test_schema_parity import built_by_init_db


async def test_backup_writes_a_dump_that_lists_every_table(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"DATABASE_URL": url.render_as_string(hide_password=False), "APP_ENV": "test"}
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "backup_db.py"), "--dir", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    dumps = list(tmp_path.glob(f"{url.database}-*.dump"))
    assert len(dumps) == 1 and str(dumps[0]) in result.stdout
    if url.password:
        assert url.password not in result.stdout + result.stderr
    listing = subprocess.run(
        [_pg_tool("pg_restore"), "--list", str(dumps[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for table in ("collection_jobs", "data_collection_logs", "analysts"):
        assert f"TABLE DATA public {table} " in listing


@pytest.mark.parametrize(
    ("version", "refused"), [(90624, True), (120017, True), (130000, False), (180001, False)]
)
def test_servers_older_than_13_are_refused(version: int, refused: bool) -> None:
    if refused:
        with pytest.raises(ServerTooOldError, match="13 or newer is needed"):
            check_server_version(version)
    else:
        check_server_version(version)
