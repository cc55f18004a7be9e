"""What a session's recording consists of, folded from its ledger alone.

Every fact the manifest states is an event in the hash chain: who started and stopped the
recording and when, what the recorder reported, each segment with its hashes, and each gap with
its reason. A reviewer or an export checks files against it (``verify_files``); nothing on disk
is trusted on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from rooms.events import Event

RECORDING_EVENTS = (
    "recording.started",
    "recording.stopped",
    "recording.ready",
    "recording.failed",
    "recording.segment",
    "recording.gap",
)


def manifest(events: Iterable[Event]) -> dict:
    events = list(events)
    runs: list[dict] = []
    segments: list[dict] = []
    gaps: list[dict] = []
    recorder: list[dict] = []
    for e in events:
        ref = {"seq": e.seq, "ts": e.ts, "hash": e.hash}
        if e.type == "recording.started":
            runs.append({"started": e.ts, "started_by": e.actor, "stopped": None, "why": None})
        elif e.type in ("recording.stopped", "recording.failed", "session.ended"):
            if runs and runs[-1]["stopped"] is None:
                runs[-1].update(stopped=e.ts, why=e.type, stopped_by=e.actor)
        if e.type in ("recording.ready", "recording.failed"):
            recorder.append({**ref, "status": e.type.split(".")[1], **e.data})
        elif e.type == "recording.segment":
            segments.append({**ref, **e.data})
        elif e.type == "recording.gap":
            gaps.append({**ref, **e.data})
    return {
        "session": events[0].session if events else None,
        "seq": events[-1].seq if events else 0,
        "head": events[-1].hash if events else None,
        "runs": runs,
        "recorder": recorder,
        "segments": segments,
        "gaps": gaps,
        "bytes": sum(s["bytes"] for s in segments),
    }


def restart_gap(events: Iterable[Event], now: float) -> dict | None:
    """The ``record_gap`` a restarted node appends when the ledger says recording was on: from
    the last moment the recording is known to hold (a segment's end, a gap's end, the start)
    until now. None when recording was off (nothing is missing)."""
    on, since = False, 0.0
    for e in events:
        if e.type == "recording.started":
            on, since = True, max(since, e.ts)
        elif e.type in ("recording.stopped", "recording.failed", "session.ended"):
            on = False
        elif e.type in ("recording.segment", "recording.gap"):
            since = max(since, e.data["wall_end"])
    if not on:
        return None
    return {
        "type": "record_gap",
        "reason": "node_restart",
        "wall_start": round(since, 6),
        "wall_end": round(max(now, since), 6),
    }


def verify_files(m: dict, directory: Path) -> list[str]:
    """Problems between the manifest and the stored files: missing, changed or unlisted."""
    problems = []
    listed = set()
    for s in m["segments"]:
        listed.add(s["file"])
        path = directory / s["file"]
        if not path.exists():
            problems.append(f"{s['file']}: missing")
            continue
        data = path.read_bytes()
        if len(data) != s["bytes"] or hashlib.sha256(data).hexdigest() != s["sha256"]:
            problems.append(f"{s['file']}: does not match seq {s['seq']}")
    for path in sorted(directory.glob("*.seg")):
        if path.name not in listed:
            problems.append(f"{path.name}: not in the ledger")
    return problems
