"""pytest-alembic's two fixtures, for this project's migrations: `pytest --test-alembic`
runs its built-in tests (single head, upgrade, models match the DDL, up-down consistency,
and the experimental ones a suite opts into) with no set-up of the suite's own.

Loaded by `app.testing.plugin` when pytest-alembic is installed (it is in the `dev`
extra). Each test gets an empty database of its own on the test server, dropped after;
the floor of the downgrade walk is the baseline, whose tables production had before
this project and which no migration ever drops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from pytest_alembic.config import Config as PytestAlembicConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.db.migrate.feature_state import BASELINE_REVISION
from app.db.migrate.steps import alembic_config as project_alembic_config
from app.db.settings import Environment
from app.testing.databases import DatabaseServer, drop, empty, worker_name

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on a loop of its own, in a thread of its own: the
    fixtures are synchronous, and the test's loop is not to be touched."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@pytest.fixture
def alembic_config() -> PytestAlembicConfig:
    """This project's migrations (its `alembic.ini`, wherever the package is installed),
    run as in the test environment, the walk down stopping at the baseline."""
    config = project_alembic_config()
    config.attributes["environment"] = Environment.TEST
    return PytestAlembicConfig(alembic_config=config, minimum_downgrade_revision=BASELINE_REVISION)


@pytest.fixture
def alembic_engine(
    request: pytest.FixtureRequest, test_server: DatabaseServer
) -> Iterator[AsyncEngine]:
    """An empty database of its own on the test server, dropped after the test."""
    name = f"{test_server.base}_{worker_name(request.config)}_alembic_{uuid.uuid4().hex[:8]}"
    url = _run(empty(test_server.admin_url, name))
    engine = create_engine(url, null_pool=True)
    try:
        yield engine
    finally:
        _run(engine.dispose())
        _run(drop(test_server.admin_url, name))
