"""The operators' actions on one job, as the API and the dashboard both take them: the
caller's permission, the job visible to it, then the job service's call (the one owner of
a job's state)."""

from __future__ import annotations

import uuid

from app.db.engine import session_scope
from app.models import CollectionJob
from app.services import collection_jobs as jobs
from app.web import queries
from app.web.access import Access, Action
from app.web.problems import forbidden
from app.web.state import WebState

JOB_ACTIONS = (Action.CANCEL, Action.REQUEUE, Action.RETRY)


def require(access: Access, action: Action) -> None:
    if not access.allows(action):
        raise forbidden(action.value)


async def act_on_job(
    state: WebState, access: Access, action: Action, job_id: uuid.UUID, *, keep_progress: bool
) -> CollectionJob:
    """Cancel, requeue or retry (`keep_progress`: from where it was) one job; 403 without
    the permission, 404 for a job the caller does not see, 409 when its status forbids."""
    if action not in JOB_ACTIONS:
        raise forbidden(action.value)
    require(access, action)
    async with session_scope(state.sessions) as session:
        await queries.visible_job(session, job_id, access)
        if action is Action.RETRY:
            return await jobs.retry_job(session, job_id, keep_progress=keep_progress)
        if action is Action.CANCEL:
            return await jobs.cancel_job(session, job_id)
        return await jobs.requeue_job(session, job_id)
