"""Opaque page cursors: where a page ended and a fingerprint of the listing it belongs to.

A cursor is base64url JSON. It is not signed: one made by hand is only a position in a
listing the caller may read anyway. One of another listing (another filter, job or
caller) or one that is not a cursor at all is refused, naming `cursor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from app.web.problems import invalid


def fingerprint(*listing: Any) -> str:
    return hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()[:16]


def encode(created_at: datetime, item_id: uuid.UUID, listing: str) -> str:
    raw = json.dumps({"c": created_at.isoformat(), "i": str(item_id), "l": listing})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, listing: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        position = datetime.fromisoformat(data["c"]), uuid.UUID(data["i"])
        owner = data["l"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise invalid("cursor", "is not a cursor from this API") from None
    if position[0].tzinfo is None:
        raise invalid("cursor", "is not a cursor from this API")
    if owner != listing:
        raise invalid("cursor", "belongs to another listing (another filter or job)")
    return position
