"""Another team's FastAPI app mounts our router under its own prefix, with its own
authentication and permissions, from an installed (non-editable) copy."""

from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.testing.factories import make_analyst
from app.web import Access, Action, collection_jobs_lifespan, create_router


def current_user(x_user: str = Header(default="")) -> str:
    if not x_user:
        raise HTTPException(401, "who are you?")
    return x_user


def access(user: str = Depends(current_user)) -> Access:
    return Access() if user == "operator" else Access(frozenset({Action.READ}))


async def test_the_platform_mounts_the_api(database_of_its_own) -> None:
    url = await database_of_its_own()
    engine = create_engine(url, null_pool=True)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            analyst = (await make_analyst(session)).id
    finally:
        await engine.dispose()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with collection_jobs_lifespan(app, url=url):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(
        create_router(access=access), prefix="/v2/collection", dependencies=[Depends(current_user)]
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://platform/v2/collection") as client,
    ):
        job = {
            "analyst_id": str(analyst),
            "collection_types": ["news"],
            "start_date": "2026-11-01T00:00:00+09:00",
            "end_date": "2026-11-30T00:00:00+09:00",
        }
        created = await client.post("/api/jobs", json=job, headers={"x-user": "operator"})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        refused = await client.post(f"/api/jobs/{job_id}/cancel", headers={"x-user": "kim"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await client.get(f"/api/jobs/{job_id}")).status_code == 401
        seen = await client.get(f"/api/jobs/{job_id}", headers={"x-user": "kim"})
        assert seen.json()["status"] == "pending" and seen.json()["progress"] == {"news": 0.0}
