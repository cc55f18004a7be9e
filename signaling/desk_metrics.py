"""The hall's figures on ``/metrics`` (read at scrape time): who waits, which lawyers are on
shift and how, and today's calls, waits, abandonment, talk time and ratings."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from desk import queue as q
from desk.roster import lawyers_on_shift
from desk.stats import summarise


class DeskMetrics:
    def __init__(self, desk) -> None:
        self.desk = desk

    def collect(self):
        desk = self.desk
        now = desk.clock()
        live = [t.entry() for t in desk.store.live()]
        waiting = GaugeMetricFamily(
            "parley_desk_waiting", "Callers in the queue (held places included)", labels=["point"]
        )
        for point in desk.store.points():
            waiting.add_metric(
                [point.id], len([e for e in q.line(live, [point.id], now) if e.point == point.id])
            )
        waiting.add_metric(
            ["mediation"], sum(1 for e in q.line(live, None, now) if e.point is None)
        )
        yield waiting
        statuses = desk.store.statuses()
        lawyers = GaugeMetricFamily(
            "parley_desk_lawyers_on_shift", "Duty lawyers on shift now", labels=["status"]
        )
        on = lawyers_on_shift(desk.store.shifts(now), None, now)
        for status in ("available", "busy", "away"):
            lawyers.add_metric([status], sum(statuses.get(u, "away") == status for u in on))
        yield lawyers
        day = desk.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
        since = day.replace(tzinfo=desk.tz).timestamp()
        s = summarise([t.record() for t in desk.store.since(since)], since)
        for key, help_ in (
            ("calls", "Calls queued today"),
            ("answered", "Calls answered today"),
            ("abandoned", "Callers who left or lapsed today"),
            ("wait_p50", "Median wait today, seconds"),
            ("wait_p95", "95th percentile wait today, seconds"),
            ("talk_mean", "Mean consultation length today, seconds"),
            ("rating_mean", "Mean rating today (1-5)"),
        ):
            if s[key] is not None:
                yield GaugeMetricFamily(f"parley_desk_today_{key}", help_, value=s[key])
