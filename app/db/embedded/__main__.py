"""python -m app.db.embedded [--test] start|stop|url

Start or stop the embedded development server (`--test`: this suite's test server, the
suite being the project folder the command runs in), or print a psql URL of its database.
Exit codes as init_db's (2 bad settings, 10 the server could not start or stop).
"""

from __future__ import annotations

import argparse
import sys

from app.db.cli import run_command
from app.db.embedded import (
    DATABASE_NAMES,
    data_folder,
    ensure_database,
    server,
    server_url,
    test_server,
)
from app.db.settings import Environment, load_settings
from app.db.urls import psql_url


async def _main(action: str, test: bool) -> int:
    settings = load_settings()
    if test:
        suite = test_server.suite_root()
        folder = test_server.data_folder_for_tests(settings, suite)
        if action == "stop":
            print("stopped" if test_server.stop_and_remove(folder) else "not running")
            return 0
        admin = test_server.server_url_for_tests(settings, suite)
    elif action == "stop":
        print("stopped" if server.stop(data_folder(settings)) else "not running")
        return 0
    else:
        folder, admin = data_folder(settings), server_url(settings)
    if action == "start":
        print(f"running ({folder})")
    else:
        name = DATABASE_NAMES[Environment.TEST if test else Environment.DEVELOPMENT]
        print(psql_url(await ensure_database(admin, name)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.db.embedded", description="Manage the embedded development server."
    )
    parser.add_argument(
        "--test", action="store_true", help="the test server instead of the development one"
    )
    parser.add_argument("action", choices=["start", "stop", "url"])
    args = parser.parse_args(argv)
    return run_command("embedded", _main(args.action, args.test))


if __name__ == "__main__":
    sys.exit(main())
