"""Drop and recreate the development (or test) database from the models.

    python scripts/init_db.py [--yes] [--force] [--seed]

Development and test only. With no DATABASE_URL it uses the embedded server. Exit codes:
0 done, 2 bad settings, 3 environment refused, 4 database marker refused,
5 not confirmed, 6 server unreachable or database missing, 7 authentication failed,
10 embedded server failed, 11 the server refused (a missing privilege, say), 130 interrupted
(the message says whether the reset was applied).
"""

from __future__ import annotations

import argparse
import sys

from app.db.cli import run_command
from app.db.embedded import database_url
from app.db.engine import engine_from_settings, translate_connect_errors
from app.db.errors import NotConfirmedError
from app.db.reset.init_db import Confirm, ResetPlan, ResetReport, init_db, require_resettable
from app.db.settings import load_settings
from app.db.urls import describe_url


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="init_db.py",
        description="Drop and recreate every table of a development or test database.",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--force",
        action="store_true",
        help="reset a database marked for another development/test environment or of "
        "unknown origin (never one marked staging or production)",
    )
    parser.add_argument("--seed", action="store_true", help="load a small sample data set")
    return parser.parse_args(argv)


def _confirmer(target: str, assume_yes: bool) -> Confirm:
    def confirm(plan: ResetPlan) -> bool:
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            raise NotConfirmedError(
                f"refusing to drop {plan.user_tables} table(s) of {target} without "
                "confirmation: no terminal to ask; pass --yes"
            )
        marker = plan.marker or "no marker"
        prompt = f"Drop all {plan.user_tables} table(s) ({marker}) and recreate them? [y/N] "
        try:
            return input(prompt).strip().lower() in ("y", "yes")
        except (EOFError, KeyboardInterrupt):
            print()
            return False

    return confirm


async def _run(args: argparse.Namespace, report: ResetReport) -> int:
    settings = load_settings()
    environment = settings.environment()
    require_resettable(environment)  # before connecting to anything
    url = await database_url(settings, environment)
    target = describe_url(url)
    print(f"init_db: target {target} (APP_ENV={environment.value})")
    engine = engine_from_settings(settings, url, null_pool=True)
    report.watch_url = url
    try:
        with translate_connect_errors(url):
            result = await init_db(
                engine,
                environment=environment,
                force=args.force,
                seed=args.seed,
                confirm=_confirmer(target, args.yes),
                report=report,
            )
    finally:
        await engine.dispose()
    print(f"init_db: recreated {', '.join(result.tables)}")
    if result.seeded:
        print("init_db: seeded " + ", ".join(f"{n} {t}" for t, n in result.seeded.items()))
    return 0


def _notice(message: str) -> None:
    print(f"init_db: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    report = ResetReport(notify=_notice)
    return run_command(
        "init_db", _run(_parse_args(argv), report), interrupted=lambda: report.phase.value
    )


if __name__ == "__main__":
    sys.exit(main())
