"""A throwaway PostgreSQL with password (SCRAM) authentication on 127.0.0.1.

The embedded development server trusts local connections, so a wrong password can only be
tested on a server like this one, built from the same embedded binaries.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
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
    with restartable_server() as (url, _restart):
        yield url


@contextmanager
def restartable_server() -> Iterator[tuple[URL, Callable[..., None]]]:
    """The same server, with a function that restarts it (fast shutdown, then start)."""
    from app.db.embedded import server

    bin_dir = server.binaries()
    server_user = server.server_user()
    user = None if server_user is None else server_user.pw_uid
    root = Path(tempfile.mkdtemp(prefix="pwserver-"))  # our own folder, under /tmp (1777)
    if server_user is not None:  # PostgreSQL refuses to run as root
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    pgdata, pwfile = root / "data", root / "pw"
    pwfile.write_text(PASSWORD)
    if server_user is not None:
        os.chown(pwfile, server_user.pw_uid, server_user.pw_gid)
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60, user=user, cwd=root)

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

    def start(command: str = "start") -> None:
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-m",
            "fast",
            "-l",
            str(root / "log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {shlex.quote(str(root))}",
            command,
        )

    def restart(down_for: float = 0.0) -> None:
        """Restart the server; with `down_for`, it stays stopped that many seconds."""
        if not down_for:
            start("restart")
            return
        start("stop")
        time.sleep(down_for)
        start("start")

    start()
    try:
        yield (
            URL.create(
                "postgresql+asyncpg",
                username="postgres",
                password=PASSWORD,
                host="127.0.0.1",
                port=port,
                database="postgres",
            ),
            restart,
        )
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
