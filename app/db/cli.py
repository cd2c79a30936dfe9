"""What the command-line tools share: an expected failure is one line and its exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError

from app.db.errors import DatabaseSetupError, ServerRefusedError


def run_command(
    name: str,
    command: Coroutine[Any, Any, int],
    *,
    interrupted: Callable[[], str] = lambda: "interrupted",
) -> int:
    """Run `command`; print an expected failure as `name: error: ...`, never a traceback.

    `interrupted` says what an interruption (Ctrl-C) leaves behind, as far as is known.
    """
    try:
        return asyncio.run(command)
    except DatabaseSetupError as exc:
        return _fail(name, exc)
    except (DBAPIError, asyncpg.PostgresError) as exc:  # the server said no
        return _fail(name, ServerRefusedError.from_server(exc))
    except KeyboardInterrupt:
        print(f"{name}: {interrupted()}", file=sys.stderr)
        return 130


def _fail(name: str, exc: DatabaseSetupError) -> int:
    print(f"{name}: error: {exc}", file=sys.stderr)
    return exc.exit_code


class OneLine(logging.Formatter):
    """Every record on one line: an exception's first line, never its traceback (the
    libraries below log some with one, such as a pooled connection that failed to close
    while its task was being cancelled)."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info, record.exc_info, record.exc_text = record.exc_info, None, None
        line = super().format(record)
        if exc_info and exc_info[1] is not None:
            error = exc_info[1]
            first = (str(error).strip().splitlines() or [""])[0]
            line += f" ({type(error).__name__}{': ' + first if first else ''})"
        return line


def log_in_one_line(level: int = logging.INFO) -> None:
    """A long-running command's log on stderr, each record on one line (`OneLine`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
