"""What the command-line tools share: an expected failure is one line and its exit code."""

from __future__ import annotations

import asyncio
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
