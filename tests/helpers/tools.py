"""Running the command-line tools as a user would, and checking what they print."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from app.db.migrate.steps import alembic_config, planning
from app.db.settings import PROJECT_ROOT, Environment

SCRIPTS = PROJECT_ROOT / "scripts"


def run_tool(
    *argv: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python <argv>` with no terminal, away from the project's .env, only `env` set."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("APP_ENV", "DATABASE_URL", "EMBEDDED_PGDATA") and not k.startswith("PG")
    }
    return subprocess.run(
        [sys.executable, *argv],
        env={**base, **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def alembic(
    url: URL, verb: str, *args: str, environment: Environment = Environment.TEST
) -> None:
    """Run an alembic command on `url` (in a thread: env.py runs its own event loop)."""
    config = alembic_config()
    config.attributes["url"] = url
    config.attributes["environment"] = environment
    await asyncio.to_thread(getattr(command, verb), config, *args)


def url_env(url: URL, app_env: str | None = "test") -> dict[str, str]:
    env = {"DATABASE_URL": url.render_as_string(hide_password=False)}
    return env if app_env is None else {**env, "APP_ENV": app_env}


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, text: str, *, prefix: str | None = None
) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    if prefix is not None:
        assert lines[0].startswith(prefix), lines[0]
    assert text in lines[0], lines[0]


def assert_secret_hidden(output: str, secret: str, *, window: int = 5) -> None:
    """No fragment of `secret` (any `window` characters of it) in `output`.

    Raised by hand, never by a bare `assert`, and hidden from the traceback (which would
    show the arguments), so that a failure does not print the secret.
    """
    __tracebackhide__ = True
    fragments = {secret[i : i + window] for i in range(len(secret) - window + 1)}
    found = sum(fragment in output for fragment in fragments)
    if found:
        raise AssertionError(f"{found} fragment(s) of the password appear in the output")


def steps_of(revision: str) -> list[str]:
    """The statements `revision`'s upgrade runs, in order, none run."""
    with planning() as steps:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision).module.upgrade()
    return [step.sql for step in steps]
