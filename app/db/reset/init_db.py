"""`init_db`: wipe and rebuild a development or test database from the models.

Everything happens in one transaction under an advisory lock: two runs never interleave,
and a refused or failed run leaves the database exactly as it was (PostgreSQL DDL is
transactional).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import MetaData, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.errors import EnvironmentRefusedError, NotConfirmedError
from app.db.migrate.steps import stamp_head
from app.db.migrate.waits import WaitWatcher
from app.db.reset.marker import check_reset_allowed, count_user_tables, read_marker, write_marker
from app.db.settings import RESETTABLE_ENVIRONMENTS, Environment
from app.models import Base

INIT_DB_LOCK_KEY = 0x636F6C6C_6A6F6273  # "colljobs": serialises resets and migrations


@dataclass(frozen=True)
class ResetPlan:
    """What a reset is about to destroy, for the confirmation question."""

    marker: str | None
    user_tables: int


@dataclass(frozen=True)
class ResetResult:
    tables: list[str]
    seeded: dict[str, int]


Confirm = Callable[[ResetPlan], bool]


class Phase(StrEnum):
    """How far a reset got: what an interruption there leaves is known, except in one."""

    CHECKING = "interrupted before anything was changed"
    RESETTING = "interrupted before the commit: the reset was rolled back, nothing changed"
    COMMITTING = (
        "interrupted while committing: the reset may or may not have been applied; "
        "run init_db again"
    )
    COMMITTED = "interrupted after the reset was committed"


@dataclass
class ResetReport:
    """What a reset tells its caller while it runs: its phase, and whom it waits for."""

    watch_url: URL | None = None
    """The database's URL, to watch from a second connection whether the reset waits."""
    notify: Callable[[str], None] = field(default=lambda message: None)
    phase: Phase = Phase.CHECKING


def require_resettable(environment: Environment) -> None:
    if environment not in RESETTABLE_ENVIRONMENTS:
        raise EnvironmentRefusedError(
            f"refusing to run with APP_ENV={environment.value}; init_db is for development "
            "and test only (production uses `alembic upgrade head`)"
        )


async def init_db(
    engine: AsyncEngine,
    *,
    environment: Environment,
    force: bool = False,
    seed: bool = False,
    confirm: Confirm | None = None,
    report: ResetReport | None = None,
    metadata: MetaData = Base.metadata,
) -> ResetResult:
    """Drop schema `public` and recreate it with `metadata.create_all`.

    Refuses (raising, changing nothing) outside development and test, on a database
    whose marker forbids it (see `check_reset_allowed`), or when `confirm` says no.
    `confirm` is asked only when there is something to lose. `report` follows the phase
    and hears, within seconds, about any session the reset waits for.
    """
    require_resettable(environment)
    report = report or ResetReport()
    async with engine.connect() as conn:
        transaction = await conn.begin()
        watch: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if report.watch_url is not None:  # one round trip more, only for a watched reset
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            watch = WaitWatcher(report.watch_url, pid, report.notify)
        with watch:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INIT_DB_LOCK_KEY})
            marker = await conn.run_sync(read_marker)
            user_tables = await conn.run_sync(count_user_tables)
            check_reset_allowed(marker, environment, user_tables=user_tables, force=force)
            plan = ResetPlan(marker, user_tables)
            if user_tables and confirm is not None and not confirm(plan):
                raise NotConfirmedError("not confirmed; nothing was changed")

            report.phase = Phase.RESETTING
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            await conn.execute(text("GRANT USAGE ON SCHEMA public TO PUBLIC"))
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(write_marker, environment, set_by="init_db")
            await conn.run_sync(stamp_head)  # the schema is head's: later migrations apply
            seeded: dict[str, int] = {}
            if seed:
                from app.db.reset.seed import load_sample

                async with AsyncSession(bind=conn, join_transaction_mode="create_savepoint") as s:
                    seeded = await load_sample(s)
                    await s.commit()  # releases the savepoint; the transaction commits below
            report.phase = Phase.COMMITTING
            await transaction.commit()
            report.phase = Phase.COMMITTED
    return ResetResult(tables=sorted(metadata.tables), seeded=seeded)
