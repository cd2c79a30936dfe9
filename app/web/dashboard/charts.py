"""Numbers for the charts the templates draw as SVG (no chart library): positions and
heights only; every label is escaped by the template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.web.schemas import Attempt, FinishedInMinute

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True)
class Span:
    attempt: Attempt
    left: float
    """Percent of the timeline's width."""
    width: float
    outcome: str
    """The attempt's outcome, or `running`."""


def timeline(attempts: list[Attempt], now: datetime) -> list[Span]:
    """The attempts, oldest first, each placed from its start to its end (now if live)."""
    if not attempts:
        return []
    ordered = sorted(attempts, key=lambda a: a.started_at)
    begin = ordered[0].started_at
    end = max(max((a.ended_at or now) for a in ordered), begin)
    total = max((end - begin).total_seconds(), 1e-6)
    spans = []
    for attempt in ordered:
        start = (attempt.started_at - begin).total_seconds() / total * 100
        stop = ((attempt.ended_at or now) - begin).total_seconds() / total * 100
        outcome = attempt.outcome.value if attempt.outcome else "running"
        spans.append(Span(attempt, round(start, 2), round(max(stop - start, 0.5), 2), outcome))
    return spans


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    kind: str
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    top: float
    """The value at the chart's top edge."""
    width: int = WIDTH
    height: int = HEIGHT


def finished(minutes: list[FinishedInMinute]) -> Chart:
    """Jobs finished each minute of the last hour, stacked: completed, failed, cancelled."""
    top = max([m.completed + m.failed + m.cancelled for m in minutes] + [1])
    step = WIDTH / max(len(minutes), 1)
    bars = []
    for i, minute in enumerate(minutes):
        base = float(HEIGHT)
        for kind in ("completed", "failed", "cancelled"):
            count = getattr(minute, kind)
            if not count:
                continue
            height = count / top * HEIGHT
            base -= height
            label = f"{minute.minute:%H:%M} UTC: {count} {kind}"
            bars.append(Bar(round(i * step, 1), round(base, 1), round(height, 1), kind, label))
    return Chart(bars, top)


def pickup(minutes: list[FinishedInMinute], waits: dict[datetime, tuple[float, float]]) -> Chart:
    """The mean wait from pending to claimed of the claims of each minute (seconds)."""
    top = max([mean for mean, _worst in waits.values()] + [0.001])
    step = WIDTH / max(len(minutes), 1)
    bars = []
    for i, minute in enumerate(minutes):
        found = waits.get(minute.minute)
        if found is None:
            continue
        mean, worst = found
        height = max(mean / top * HEIGHT, 1.0)
        label = f"{minute.minute:%H:%M} UTC: mean {mean:.3f} s, worst {worst:.3f} s"
        bars.append(
            Bar(round(i * step, 1), round(HEIGHT - height, 1), round(height, 1), "pickup", label)
        )
    return Chart(bars, top)
