"""A real PgBouncer in transaction mode in front of the test server, when one is installed.

Workers at scale reach PostgreSQL through a pooler that hands each transaction whatever
server connection is free, so the service must not depend on session state. This starts
Debian's `pgbouncer` on a free loopback port with fewer server connections than the tests
have clients, so that connections really are shared.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

SERVER_CONNECTIONS = 8
"""PgBouncer's pool: fewer than the 16 clients of the concurrency tests."""


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quoted(value: str) -> str:
    """A libpq-style quoted value (PgBouncer's connect strings): spaces and quotes kept."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _backend(url: URL) -> tuple[str, int]:
    """Host (or socket directory) and port of the server behind `url`."""
    host = url.query.get("host") or url.host or "/var/run/postgresql"
    return str(host if isinstance(host, str) else host[0]), url.port or 5432


@contextmanager
def pgbouncer(binary: str, server: URL) -> Iterator[URL]:
    """Run PgBouncer in front of `server`'s server; yield the URL that goes through it
    (to `server`'s database; any other name reaches the database of that name)."""
    host, port = _backend(server)
    listen_port = _free_port()
    root = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    database = server.database or "postgres"
    password = f" password={_quoted(server.password)}" if server.password else ""
    config = root / "pgbouncer.ini"
    # `*`: every database name the client asks for goes to the same-named one (clones).
    config.write_text(
        f"""[databases]
* = host={host} port={port} user={server.username}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
ignore_startup_parameters = extra_float_digits
"""
    )
    config.chmod(0o600)
    command = [binary, str(config)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; run it as the owner of the server's socket
        # directory (it must reach the socket) or as nobody for a TCP server.
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
        shutil.chown(root, owner)
        shutil.chown(config, owner)
        command[1:1] = ["-u", owner]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(listen_port, process, root / "pgbouncer.log", server.password)
        yield URL.create(
            "postgresql+asyncpg",
            username=server.username,
            password="pgbouncer-auth-any",  # auth_type=any: the [databases] entry logs in
            host="127.0.0.1",
            port=listen_port,
            database=database,
        )
    finally:
        process.terminate()
        process.communicate(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, secret: str | None
) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text() if log.exists() else ""
            stderr = process.stderr.read().decode() if process.stderr else ""
            message = (stderr + detail).strip()[-500:]
            if secret:  # its log quotes the config line, password included
                message = message.replace(secret, "***")
            raise RuntimeError(f"pgbouncer exited: {message}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening within 10 s")
