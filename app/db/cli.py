"""What the command-line tools share: an expected failure is one line and its exit code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from app.db.errors import DatabaseSetupError


def run_command(name: str, command: Coroutine[Any, Any, int]) -> int:
    """Run `command`; print an expected failure as `name: error: ...`, never a traceback."""
    try:
        return asyncio.run(command)
    except DatabaseSetupError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{name}: interrupted; nothing was committed", file=sys.stderr)
        return 130
