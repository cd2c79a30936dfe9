"""Another team's tests on our plugin and models, from an installed (non-editable) copy."""

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import app
from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import CollectionType
from app.services import collection_jobs as jobs
from app.testing.factories import make_analyst, make_running_job


def test_the_package_is_installed_not_a_checkout() -> None:
    assert "site-packages" in Path(app.__file__).parts


async def test_jobs_in_a_rolled_back_session(session: AsyncSession) -> None:
    job = await make_running_job(session, [CollectionType.NEWS])
    await jobs.report_progress(session, job.id, CollectionType.NEWS, 50)
    page = await jobs.list_analyst_jobs(session, job.analyst_id, status="running")
    assert [j.id for j in page.items] == [job.id]


async def test_a_database_of_its_own_commits_for_real(database_of_its_own) -> None:
    for _ in range(10):  # long enough to overlap the other suite's run on the same server
        url = await database_of_its_own()
        engine = create_engine(url, null_pool=True)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                await make_analyst(session)
            async with engine.connect() as conn:
                name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
                count = (await conn.execute(text("SELECT count(*) FROM analysts"))).scalar_one()
            assert count == 1 and name == url.database
        finally:
            await engine.dispose()
        await asyncio.sleep(1)
