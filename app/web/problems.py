"""Errors as RFC 9457 problem documents (`application/problem+json`), raised anywhere in
the router's endpoints and turned into responses by `ProblemRoute`.

A router cannot install exception handlers on the host's app, so the route class does it
for its own endpoints only: the host's other routes keep the host's handlers. What is
turned into a response is what the caller or the infrastructure caused (bad input, a
forbidden or impossible action, the database out of reach); anything else is our bug and
propagates, loud, to the host's error handling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from app.db.faults import describe, is_outage
from app.services.collection_jobs import (
    InvalidTransitionError,
    JobNotFoundError,
    JobValidationError,
)

log = logging.getLogger("app.web")

MAX_BODY_BYTES = 64 * 1024
"""A job request is a few hundred bytes; anything near this is not one."""
RETRY_AFTER_SECONDS = 5
REQUEST_TIMEOUT_SECONDS = 10.0
"""The longest a request waits for the database before it is told to come back (503)."""


class FieldProblem(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = []


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(title=title, status=status, detail=detail, errors=errors or [])
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(
            self.problem.model_dump_json(),
            status_code=self.problem.status,
            media_type="application/problem+json",
            headers=self.headers,
        )


def invalid(field: str, reason: str) -> ProblemError:
    return ProblemError(
        422, "Invalid request", f"{field}: {reason}", [FieldProblem(field=field, reason=reason)]
    )


def forbidden(action: str) -> ProblemError:
    return ProblemError(403, "Forbidden", f"this caller may not {action} collection jobs")


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": title}
    for status, title in (
        (403, "Not allowed for this caller"),
        (404, "No such job (or not this caller's)"),
        (409, "The job's status does not allow it"),
        (413, "Body too large"),
        (422, "Invalid input, each field named"),
        (503, "Database out of reach; retry after the Retry-After seconds"),
    )
}
"""Shown in the OpenAPI schema for every endpoint."""


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _from_validation(exc: RequestValidationError) -> ProblemError:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return ProblemError(
                400,
                "Malformed body",
                "the body is not valid JSON",
                [FieldProblem(field="body", reason="not valid JSON")],
            )
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append(FieldProblem(field=_field(error.get("loc", ())), reason=message))
    detail = "; ".join(f"{e.field}: {e.reason}" for e in errors) or "invalid request"
    return ProblemError(422, "Invalid request", detail, errors)


def as_problem(exc: BaseException) -> ProblemError | None:
    """The response an expected failure gets; None for our own bugs."""
    if isinstance(exc, ProblemError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc)
    if isinstance(exc, JobValidationError):
        return invalid(exc.field, exc.problem)
    if isinstance(exc, JobNotFoundError):
        return ProblemError(404, "Not found", f"collection job {exc.job_id} does not exist")
    if isinstance(exc, InvalidTransitionError):
        return ProblemError(409, "Conflict", str(exc))
    if is_outage(exc):
        log.warning("database out of reach: %s", describe(exc))
        return ProblemError(
            503,
            "Service unavailable",
            "the database is out of reach; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return None


class _BodyTooLarge(Exception):
    pass


class _CappedBody:
    """`receive` that refuses a body past `limit` bytes, however it is sent (a
    Content-Length that lies, or chunks); `exceeded` tells afterwards, since FastAPI
    reports any failure while it reads a body as its own 400."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive, self._limit = receive, limit
        self._seen = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.exceeded = True
                raise _BodyTooLarge
        return message


TOO_LARGE = ProblemError(413, "Body too large", f"the body exceeds {MAX_BODY_BYTES} bytes")


class ProblemRoute(APIRoute):
    """A route whose expected failures are problem documents, whose body is capped, and
    whose wait for the database is bounded."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return TOO_LARGE.response()
            body = _CappedBody(request.receive, MAX_BODY_BYTES)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    return await handler(Request(request.scope, body))
            except _BodyTooLarge:
                return TOO_LARGE.response()
            except HTTPException:
                if body.exceeded:
                    return TOO_LARGE.response()
                raise
            except Exception as exc:
                problem = as_problem(exc)
                if problem is None:
                    raise
                return problem.response()

        return handle
