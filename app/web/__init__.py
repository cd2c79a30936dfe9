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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.web.access import Access, Action, full_access
    from app.web.api import MAX_PAGE, create_router
    from app.web.dashboard import create_dashboard_router
    from app.web.problems import Problem
    from app.web.state import WebState, collection_jobs_lifespan

_WHERE = {
    "Access": "app.web.access",
    "Action": "app.web.access",
    "full_access": "app.web.access",
    "MAX_PAGE": "app.web.api",
    "create_router": "app.web.api",
    "create_dashboard_router": "app.web.dashboard",
    "Problem": "app.web.problems",
    "WebState": "app.web.state",
    "collection_jobs_lifespan": "app.web.state",
}


def __getattr__(name: str) -> Any:
    """Imported on first use: `python -m app.web` can say in one line that the `web`
    extra is missing, instead of failing with a traceback as it imports this package."""
    if name not in _WHERE:
        raise AttributeError(f"module 'app.web' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = [
    "MAX_PAGE",
    "Access",
    "Action",
    "Problem",
    "WebState",
    "collection_jobs_lifespan",
    "create_dashboard_router",
    "create_router",
    "full_access",
]
