"""Retention and legal hold (R16): expired recordings are deleted, and the deletion is recorded.

A session's recording is kept ``days[kind]`` days after the session ended (None: kept forever).
``purge(service, root, days, now)`` walks every session: for one that is due, not under legal
hold, and still holds files, it first records ``recording.deleted`` (a server-only
``record_deletion``: rooms refuses it while a hold is on, under the service's lock, so a hold set
a moment before always wins), then unlinks the segment and export files and the session's wrapped data key
(without which any copy of the segments stays unreadable), and syncs the directory. A crash
between the record and the unlink leaves files the ledger already calls deleted: the next pass
removes them (``deleted_files``). ``now`` is passed in: tests run it on a simulated clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from recording.keys import DATA_KEY_FILE
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.events import Event

log = logging.getLogger("parley.recording")
DAY = 86400.0
KINDS = ("mediation", "visitation", "consultation")
DEFAULT_DAYS: Mapping[str, int | None] = {"mediation": 365, "visitation": 180, "consultation": 365}
PURGE_INTERVAL = 3600.0  # the server's job runs hourly


@dataclass(frozen=True)
class Outcome:
    session: str
    result: str  # "deleted" | "held" | "kept" | "swept" | "failed"
    files: tuple[str, ...] = ()
    detail: str = ""


def ended_at(events: Iterable[Event]) -> float | None:
    return next((e.ts for e in events if e.type == "session.ended"), None)


def deleted_files(events: Iterable[Event]) -> set[str]:
    return {f for e in events if e.type == "recording.deleted" for f in e.data["files"]}


def kept_files(events: list[Event]) -> list[str]:
    """Segment and export files the ledger lists and no deletion has removed: an export is a
    copy of the segments, so it expires with them."""
    gone = deleted_files(events)
    return [
        e.data["file"]
        for e in events
        if e.type in ("recording.segment", "recording.exported") and e.data["file"] not in gone
    ]


def _stored(directory: Path) -> list[str]:
    """What the recorder and the export job wrote into a session's directory."""
    if not directory.exists():
        return []
    return sorted(p.name for pattern in ("*.seg", "export-*.exp") for p in directory.glob(pattern))


def expires_at(events: list[Event], days: int | None) -> float | None:
    """When the session's recording becomes due for deletion; None: never (not ended, or no
    retention period for its kind)."""
    end = ended_at(events)
    if end is None or days is None:
        return None
    return end + days * DAY


def _unlink(directory: Path, names: Iterable[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    if directory.exists():
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def purge_session(
    service, root: Path, session: str, days: int | None, now: float
) -> Outcome | None:
    state = service.state(session)
    events = service.events(session)
    directory = root / session
    due = expires_at(events, days)
    listed = kept_files(events)
    leftovers = _stored(directory)
    gone = deleted_files(events)
    if gone and (stale := [n for n in leftovers if n in gone]):
        _unlink(directory, stale)  # recorded earlier, the unlink did not happen (crash)
        if not listed:
            _unlink(directory, [DATA_KEY_FILE])
        return Outcome(session, "swept", tuple(stale))
    if due is None or now < due:
        return None
    unlisted = [n for n in leftovers if n not in listed and n not in gone]
    files = listed + unlisted  # a crash's unrecorded segment goes too, and is named
    if not files:
        return None
    if state.legal_hold is not None:
        return Outcome(session, "held", (), state.legal_hold.get("reason", ""))
    cmd = decode_command(
        {
            "type": "record_deletion",
            "files": files,
            "reason": "retention",
            "retention_days": days,
        }
    )
    try:
        service.execute(session, "system", cmd)
    except CommandError as exc:  # a hold set in between: rooms refused, nothing deleted
        return Outcome(session, "held" if "hold" in exc.message else "failed", (), exc.message)
    _unlink(directory, [*files, DATA_KEY_FILE])
    with contextlib.suppress(OSError):
        directory.rmdir()  # empty unless something unexpected is there
    return Outcome(session, "deleted", tuple(files))


def purge(service, root: Path, days: Mapping[str, int | None], now: float) -> list[Outcome]:
    """One pass over every session: delete what is due and not held. Returns what happened."""
    outcomes = []
    for state in service.sessions():
        if state.kind not in days or not (state.segments or (root / state.id).exists()):
            continue
        try:
            outcome = purge_session(service, root, state.id, days[state.kind], now)
        except OSError as exc:
            log.exception("purge of %s failed", state.id)
            outcome = Outcome(state.id, "failed", (), str(exc))
        if outcome is not None:
            log.info(
                "retention %s", outcome.result, extra={"session": state.id, "files": outcome.files}
            )
            outcomes.append(outcome)
    return outcomes


def parse_days(raw: str | int | None) -> int | None:
    """A retention setting: a whole number of days, or ``forever``/empty for no purge."""
    if raw is None or isinstance(raw, int):
        return raw
    raw = raw.strip().lower()
    if raw in ("", "forever", "none"):
        return None
    if not raw.isdigit():
        raise ValueError(
            f"bad_config: retention days: a whole number or 'forever', not {raw[:20]!r}"
        )
    return int(raw)
