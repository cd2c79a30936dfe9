"""scripts/backup_db.py: a listed custom-format dump, and the refusal of old servers."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from app.db.settings import PROJECT_ROOT
from app.db.urls import parse_database_url
from scripts.backup_db import (
    BackupFailedError,
    ServerTooOldError,
    _pg_tool,
    check_server_version,
    dump,
)
from tests.conftest import ScratchFactory
from tests.helpers.tools import assert_one_line_error, assert_secret_hidden, run_tool, url_env
from tests.test_schema_parity import built_by_init_db

BACKUP = str(PROJECT_ROOT / "scripts" / "backup_db.py")


def backup(url: URL, folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tool(BACKUP, "--dir", str(folder), env={**url_env(url), **env}, cwd=folder)


async def test_backup_writes_a_dump_that_lists_every_table(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    result = backup(url, tmp_path)
    assert result.returncode == 0, result.stderr
    dumps = list(tmp_path.glob(f"{url.database}-*.dump"))
    assert len(dumps) == 1 and str(dumps[0]) in result.stdout
    if url.password:
        assert_secret_hidden(result.stdout + result.stderr, url.password)
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


async def test_a_backup_never_replaces_an_existing_file(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    earlier = tmp_path / f"{url.database}-20261201T000000Z.dump"
    earlier.write_bytes(b"an earlier backup")
    first, _ = dump(url, tmp_path, connect_timeout=10, stamp="20261201T000000Z")
    second, _ = dump(url, tmp_path, connect_timeout=10, stamp="20261201T000000Z")
    assert earlier.read_bytes() == b"an earlier backup"
    assert [first.name, second.name] == [
        f"{url.database}-20261201T000000Z-2.dump",
        f"{url.database}-20261201T000000Z-3.dump",
    ]
    assert first.read_bytes()[:5] == b"PGDMP"


@pytest.fixture
def silent_server() -> Iterator[URL]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        yield URL.create("postgresql+asyncpg", "app", "Pw-silent-7", "127.0.0.1", port, "db")


def test_db_connect_timeout_bounds_the_backup(silent_server: URL, tmp_path: Path) -> None:
    result = backup(silent_server, tmp_path, DB_CONNECT_TIMEOUT="2")
    assert_one_line_error(result, 6, "timed out connecting", prefix="backup_db: error: ")
    with pytest.raises(BackupFailedError, match=r"pg_dump failed: .*timeout"):
        dump(silent_server, tmp_path, connect_timeout=2)  # pg_dump itself is bounded too
    assert not list(tmp_path.glob("*.dump"))


async def test_sslmode_reaches_pg_dump(
    secured_server: URL, scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    plain = secured_server.update_query_dict({"sslmode": "disable"})
    result = backup(plain, tmp_path)
    assert result.returncode == 0, result.stderr
    required = parse_database_url(
        secured_server.update_query_dict({"sslmode": "require"}).render_as_string(False)
    )
    with pytest.raises(BackupFailedError, match="SSL"):  # this server has no TLS
        dump(required, tmp_path, connect_timeout=10)
    result = backup(required, tmp_path)
    assert result.returncode == 6 and "Traceback" not in result.stderr, result.stderr
