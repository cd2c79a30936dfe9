"""No tool prints any part of a password, whatever shape the URL has: each bad URL is one
line and exit code 2 (alembic: its own failure code), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.settings import PROJECT_ROOT
from tests.helpers.tools import SCRIPTS, assert_secret_hidden, run_tool

PASSWORD = "Kq3-First@Half-9z"
ALEMBIC = ("-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"))
TOOLS = {
    "init_db": (str(SCRIPTS / "init_db.py"), "--yes"),
    "verify_schema": (str(SCRIPTS / "verify_schema.py"),),
    "backup_db": (str(SCRIPTS / "backup_db.py"), "--dir", "backups"),
    "embedded": ("-m", "app.db.embedded", "url"),
    "alembic current": ("-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), "current"),
    "alembic upgrade": (
        "-m",
        "alembic",
        "-c",
        str(PROJECT_ROOT / "alembic.ini"),
        "upgrade",
        "head",
    ),
}
BAD_URLS = {
    "unencoded @": f"postgresql://app:{PASSWORD}@db.internal:5432/platform",
    "unencoded /": "postgresql://app:Kq3-First/Half-9z@db.internal/platform",
    "unknown parameter": "postgresql://app:Kq3-FirstHalf-9z@db/platform?sslcompression=1",
    "bad sslmode": "postgresql://app:Kq3-FirstHalf-9z@db/platform?sslmode=yes-please",
    "several hosts": "postgresql://app:Kq3-FirstHalf-9z@db1,db2/platform",
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("case", BAD_URLS)
def test_every_tool_refuses_a_bad_url_in_one_line_without_the_password(
    tool: str, case: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": BAD_URLS[case], "APP_ENV": "development"}
    result = run_tool(*TOOLS[tool], env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "Traceback" not in output
    said = [line for line in output.splitlines() if "error" in line.lower() or "FAILED" in line]
    assert len(said) == 1, output.count("\n")  # one line says what failed, never two
    assert said[0] in result.stderr.splitlines()
    for fragment in ("Kq3-First", "Half-9z", "db.internal"):
        assert_secret_hidden(output, fragment)
    assert not list(tmp_path.iterdir()), "a refused run wrote files"
