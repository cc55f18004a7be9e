"""What a session's recording consists of, folded from its ledger alone.

Every fact the manifest states is an event in the hash chain: who started and stopped the
recording and when, what the recorder reported, each segment with its hashes, and each gap with
its reason, and each retention deletion. A reviewer or an export checks files against it (``verify_files``); nothing on disk
is trusted on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from rooms.commands import decode_command
from rooms.events import Event

RECORDING_EVENTS = (
    "recording.started",
    "recording.stopped",
    "recording.ready",
    "recording.failed",
    "recording.segment",
    "recording.gap",
    "recording.deleted",
)


MANIFEST_TYPE = "parley-recording-manifest/v1"


class _Fields:
    """An event as the fold reads it, from an ``Event`` or from its JSON form (a ledger excerpt
    in an evidence bundle), so the manifest is derived the same way online and offline."""

    __slots__ = ("type", "seq", "ts", "hash", "actor", "session", "data")

    def __init__(self, e: Event | dict) -> None:
        get = e.get if isinstance(e, dict) else lambda k: getattr(e, k, None)
        for k in self.__slots__:
            setattr(self, k, get(k))
        if not isinstance(self.data, dict):
            self.data = {}


def manifest(events: Iterable[Event | dict]) -> dict:
    events = [_Fields(e) for e in events]
    runs: list[dict] = []
    segments: list[dict] = []
    gaps: list[dict] = []
    recorder: list[dict] = []
    deleted: list[dict] = []
    pauses: list[dict] = []
    for e in events:
        ref = {"seq": e.seq, "ts": e.ts, "hash": e.hash}
        if e.type == "recording.started":
            runs.append({"started": e.ts, "started_by": e.actor, "stopped": None, "why": None})
        elif e.type in ("recording.stopped", "recording.failed", "session.ended"):
            if runs and runs[-1]["stopped"] is None:
                runs[-1].update(stopped=e.ts, why=e.type, stopped_by=e.actor)
        if e.type == "recording.paused":  # a consent withdrawn (or missing): nothing recorded
            pauses.append({**ref, "by": e.actor, **e.data, "resumed": None, "why": None})
        elif e.type in (
            "recording.resumed",
            "recording.stopped",
            "recording.failed",
            "session.ended",
        ):
            if pauses and pauses[-1]["resumed"] is None:
                pauses[-1].update(resumed=e.ts, why=e.type)
        if e.type in ("recording.ready", "recording.failed"):
            recorder.append({**ref, "status": e.type.split(".")[1], **e.data})
        elif e.type == "recording.segment":
            segments.append({**ref, **e.data})
        elif e.type == "recording.gap":
            gaps.append({**ref, **e.data})
        elif e.type == "recording.deleted":
            deleted.append({**ref, **e.data})
    m = {
        "session": events[0].session if events else None,
        "seq": events[-1].seq if events else 0,
        "head": events[-1].hash if events else None,
        "runs": runs,
        "recorder": recorder,
        "segments": segments,
        "gaps": gaps,
        "bytes": sum(s["bytes"] for s in segments),
    }
    if deleted:  # only then: a bundle sealed before deletions were listed still verifies
        m["deleted"] = deleted
    if pauses:  # likewise: the gaps a withdrawn consent made (docs/recording.md)
        m["pauses"] = pauses
    return m


def bundle_manifest(ledger: Iterable[Event | dict]) -> dict | None:
    """``recording-manifest.json`` of an evidence bundle: the manifest with its type, or None
    when the ledger never recorded anything. The bundle writer and ``verify`` both call this,
    so what is sealed and what is checked come from one derivation."""
    events = [e for e in ledger if isinstance(e, (Event, dict))]
    if not any(_Fields(e).type in RECORDING_EVENTS for e in events):
        return None
    return {"type": MANIFEST_TYPE, **manifest(events)}


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


def record_downtime(service, session_id: str, now: float) -> dict | None:
    """Append ``restart_gap`` to a session whose recording was on when the node serving it went
    away (a restart here, or a takeover by another node): the gap appended, or None. A refusal
    (``CommandError``) is the caller's to log."""
    state = service.state(session_id)
    if not state.recording or state.ended:
        return None
    gap = restart_gap(service.events(session_id), now)
    if gap is not None:
        service.execute(session_id, "system", decode_command(gap))
    return gap


def file_report(m: dict, directory: Path) -> list[tuple[str, str, dict | None]]:
    """Each listed segment against its stored file, then any unlisted ``.seg``: ``(file,
    status, record)`` with status ``ok``, ``missing``, ``changed`` (size or SHA-256 differ
    from the ledger), ``unlisted`` (on disk, not in the ledger: not evidence) or ``deleted``
    (a ``recording.deleted`` event names it: removed by retention, not missing; the record is
    then that deletion, and ``record["on_disk"]`` says whether the file is still there, which
    the next purge pass sweeps)."""
    out: list[tuple[str, str, dict | None]] = []
    gone = {f: d for d in m.get("deleted", []) for f in d["files"]}
    listed = set()
    for s in m["segments"]:
        name = s["file"]
        listed.add(name)
        # a name from a bundle is data: only a plain file name inside the directory is read
        path = directory / name
        plain = Path(name).name == name
        if name in gone:
            out.append((name, "deleted", {**gone[name], "on_disk": plain and path.is_file()}))
            continue
        if not plain or not path.is_file():
            out.append((name, "missing", s))
            continue
        data = path.read_bytes()
        same = len(data) == s["bytes"] and hashlib.sha256(data).hexdigest() == s["sha256"]
        out.append((name, "ok" if same else "changed", s))
    if directory.is_dir():
        for path in sorted(directory.glob("*.seg")):
            if path.name in gone and path.name not in listed:
                out.append((path.name, "deleted", {**gone[path.name], "on_disk": True}))
            elif path.name not in listed:
                out.append((path.name, "unlisted", None))
    return out


def verify_files(m: dict, directory: Path) -> list[str]:
    """Problems between the manifest and the stored files: missing, changed or unlisted. A
    segment the ledger says retention deleted is not a problem (``file_report`` names it)."""
    words = {"missing": "missing", "unlisted": "not in the ledger"}
    return [
        f"{name}: " + (words.get(status) or f"does not match seq {s['seq']}")
        for name, status, s in file_report(m, directory)
        if status not in ("ok", "deleted")
    ]
