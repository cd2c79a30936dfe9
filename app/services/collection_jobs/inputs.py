"""Checks of the job service's inputs. Each bad value raises `JobValidationError` naming
its field before any SQL is sent, so nothing is written and the caller's transaction stays
usable (a value the database rejects would abort it).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from numbers import Real
from typing import TypeVar

from app.models import CollectionType
from app.services.collection_jobs.errors import JobValidationError

INT4_MAX = 2**31 - 1

E = TypeVar("E", bound=StrEnum)


def member(enum: type[E], value: str, field: str, what: str) -> E:
    """`value` as a member of `enum`, or a validation error that lists the allowed values."""
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(m.value for m in enum)
        raise JobValidationError(
            field, f"{value!r} is not a known {what} (one of: {known})"
        ) from None


def collection_type(value: CollectionType | str, field: str) -> str:
    return member(CollectionType, value, field, "type").value


def percent(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise JobValidationError("percent", f"must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isnan(number) or not 0.0 <= number <= 100.0:
        raise JobValidationError("percent", "must be a number between 0 and 100")
    return number


def identifier(value: object, field: str) -> uuid.UUID:
    """A UUID, or a string that is one (as an API path gives it)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise JobValidationError(field, "must be a UUID")


def aware(value: object, field: str) -> datetime:
    """A timezone-aware datetime: a naive one would be read as the server's local time."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise JobValidationError(field, "must be a timezone-aware datetime")
    return value


def optional_aware(value: object, field: str) -> datetime | None:
    return None if value is None else aware(value, field)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL, which PostgreSQL text cannot hold, and lone surrogates, which UTF-8 cannot."""


def clean_text(value: object, field: str) -> str:
    """Text as stored: NUL characters and lone surrogates become U+FFFD.

    Collected data does contain them; refusing a whole batch of logs for one such
    character would lose the rest, and the replacement character shows where it was.
    """
    if not isinstance(value, str):
        raise JobValidationError(field, f"must be a string, not {type(value).__name__}")
    return _UNSTORABLE.sub("\ufffd", value)


def count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobValidationError(field, "must be an integer")
    if not 0 <= value <= INT4_MAX:
        raise JobValidationError(field, f"must be between 0 and {INT4_MAX}")
    return value


MAX_TIMEDELTA = timedelta(days=3650)
"""Longer spans would take the database's timestamps out of range."""


def positive_timedelta(value: object, field: str) -> timedelta:
    if not isinstance(value, timedelta) or not timedelta(0) < value <= MAX_TIMEDELTA:
        raise JobValidationError(
            field, f"must be a positive timedelta of at most {MAX_TIMEDELTA.days} days"
        )
    return value
