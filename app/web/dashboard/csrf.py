"""Cross-site request forgery: every form the dashboard posts carries a token that must
match a cookie only this site can set (double submit), and a browser's own word on where
the request came from (`Sec-Fetch-Site`, `Origin`) must be this site."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response

from app.web.problems import ProblemError

COOKIE = "collection_jobs_csrf"


def token(request: Request) -> str:
    """The caller's token: its cookie's, or a new one (`remember` sets the cookie)."""
    return request.cookies.get(COOKIE) or secrets.token_urlsafe(32)


def remember(request: Request, response: Response, value: str) -> None:
    if request.cookies.get(COOKIE) != value:
        response.set_cookie(
            COOKIE,
            value,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )


def check(request: Request, submitted: str) -> None:
    """403 unless the post comes from this site with the caller's own token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        raise ProblemError(403, "Forbidden", "a cross-site request cannot act on jobs")
    origin = request.headers.get("origin")  # its host, not its scheme: a proxy may end TLS
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ProblemError(403, "Forbidden", "a request from another origin cannot act")
    expected = request.cookies.get(COOKIE, "")
    if not expected or not hmac.compare_digest(expected, submitted):
        raise ProblemError(
            403, "Forbidden", "the form's token is missing or stale: reload the page"
        )
