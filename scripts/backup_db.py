"""Back up the database before migrating: pg_dump in custom format, checked by listing it.

    python scripts/backup_db.py [--dir backups]

Refuses servers older than PostgreSQL 13 (the schema needs the built-in gen_random_uuid()).
The password reaches pg_dump through its environment, never its command line; a backup
never replaces an existing file. Exit codes:
0 done, 2 bad settings, 6 unreachable, 7 authentication failed, 8 server too old,
9 pg_dump or the check of its output failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import URL

from app.db.cli import run_command
from app.db.embedded import database_url, server
from app.db.engine import connect
from app.db.errors import DatabaseSetupError
from app.db.settings import PROJECT_ROOT, load_settings
from app.db.urls import describe_url, libpq_env

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
    with contextlib.suppress(DatabaseSetupError):  # the embedded server is optional here
        candidates.append(str(server.installed_binaries() / name))

    def major(path: str) -> int:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)", out)
        return int(found.group(1)) if found else 0

    found = [c for c in candidates if c and os.access(c, os.X_OK)]
    if not found:
        raise BackupFailedError(f"{name} not found; install the PostgreSQL client tools")
    return max(found, key=major)


async def server_version(url: URL, *, connect_timeout: float) -> int:
    conn = await connect(url, connect_timeout=connect_timeout)
    try:
        return int(await conn.fetchval("SHOW server_version_num"))
    finally:
        await conn.close()


def _create_new(folder: Path, stem: str) -> tuple[Path, BinaryIO]:
    """Open a file that did not exist: a backup never replaces another one."""
    for n in range(1, 1000):
        path = folder / (f"{stem}.dump" if n == 1 else f"{stem}-{n}.dump")
        with contextlib.suppress(FileExistsError):
            return path, path.open("xb")
    raise BackupFailedError(f"too many backups named {stem}-*.dump in {folder}")


def dump(
    url: URL, folder: Path, *, connect_timeout: float, stamp: str | None = None
) -> tuple[Path, int]:
    """Write the dump into a new file and return it with the entries its listing shows.

    Everything reaches pg_dump through libpq's environment (host, TLS mode, connect
    timeout, password): nothing on its command line, nothing inherited from the caller's
    own PG* variables. A failed or interrupted dump leaves no file behind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", str(url.database)) + f"-{stamp}"
    path, out = _create_new(folder, stem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= libpq_env(url, connect_timeout=connect_timeout)
    try:
        with out:
            result = subprocess.run(
                [_pg_tool("pg_dump"), "--format=custom", "--no-password"],
                env=env,
                stdout=out,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["no message"]
            raise BackupFailedError(f"pg_dump failed: {lines[-1]}")
        listing = subprocess.run(
            [_pg_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    if listing.returncode != 0:
        raise BackupFailedError(f"{path} could not be listed by pg_restore; do not rely on it")
    return path, len(entries)


async def run(folder: Path) -> int:
    settings = load_settings()
    url = await database_url(settings, settings.environment(), create=False)
    print(f"backup_db: {describe_url(url)}")
    timeout = settings.db_connect_timeout
    check_server_version(await server_version(url, connect_timeout=timeout))
    path, entries = await asyncio.to_thread(dump, url, folder, connect_timeout=timeout)
    print(f"backup_db: wrote {path} ({path.stat().st_size} bytes, {entries} entries listed)")
    print(f"backup_db: restore with: pg_restore --clean --if-exists --dbname <url> {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=PROJECT_ROOT / "backups")
    args = parser.parse_args()
    return run_command(
        "backup_db",
        run(args.dir),
        interrupted=lambda: (
            "interrupted: a dump left in the folder was not checked; do not rely on it"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
