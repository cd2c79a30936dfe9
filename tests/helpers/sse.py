"""A Server-Sent Events reader for the tests and benchmarks, on httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    kind: str
    data: Any
    id: str | None


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a streaming response, as they arrive (comments skipped)."""
    kind, event_id = "message", None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield Event(kind, json.loads("\n".join(data)), event_id)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
