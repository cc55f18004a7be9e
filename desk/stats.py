"""Hall statistics from the tickets (pure): calls, waits, abandonment, talk time, ratings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    kind: str
    state: str
    queued_at: float
    picked_at: float | None
    ended_at: float | None
    rating: int | None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def summarise(records: Iterable[Record], since: float) -> dict:
    """Calls queued since ``since`` (callbacks are appointments, not calls)."""
    calls = [r for r in records if r.queued_at >= since and r.state != "callback"]
    waits = [r.picked_at - r.queued_at for r in calls if r.picked_at is not None]
    talks = [
        r.ended_at - r.picked_at
        for r in calls
        if r.kind == "citizen" and r.picked_at is not None and r.ended_at is not None
    ]
    ratings = [r.rating for r in calls if r.rating is not None]
    abandoned = sum(r.state == "abandoned" for r in calls)
    finished = sum(r.state in ("abandoned", "done", "serving") for r in calls)
    return {
        "calls": len(calls),
        "answered": len(waits),
        "wait_p50": percentile(waits, 50),
        "wait_p95": percentile(waits, 95),
        "abandoned": abandoned,
        "abandonment": abandoned / finished if finished else None,
        "talk_mean": sum(talks) / len(talks) if talks else None,
        "ratings": len(ratings),
        "rating_mean": sum(ratings) / len(ratings) if ratings else None,
    }
