"""A host app for the browser tests: the platform's own FastAPI app with the API and the
dashboard included under WEB_HOST_PREFIX (`uvicorn tests.web_host:app`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.web import collection_jobs_lifespan, create_dashboard_router, create_router


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with collection_jobs_lifespan(app):
        yield


prefix = os.environ.get("WEB_HOST_PREFIX", "")
app = FastAPI(lifespan=lifespan)
app.include_router(create_router(), prefix=prefix)
app.include_router(create_dashboard_router(), prefix=prefix)
