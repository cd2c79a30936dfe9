"""The collection jobs' HTTP face for the platform's FastAPI app (the `web` extra).

    from contextlib import asynccontextmanager
    from fastapi import Depends, FastAPI
    from app.web import collection_jobs_lifespan, create_router

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with collection_jobs_lifespan(app):  # one engine, one LISTEN per process
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(create_router(access=my_access), prefix="/collection",
                       dependencies=[Depends(my_authentication)])

See docs/web.md; `python -m app.web` serves it alone.
"""

from app.web.access import Access, Action, full_access
from app.web.api import MAX_PAGE, create_router
from app.web.problems import Problem
from app.web.state import WebState, collection_jobs_lifespan

__all__ = [
    "MAX_PAGE",
    "Access",
    "Action",
    "Problem",
    "WebState",
    "collection_jobs_lifespan",
    "create_router",
    "full_access",
]
