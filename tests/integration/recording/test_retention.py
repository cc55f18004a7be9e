"""Retention and legal hold (R16) on a simulated clock: real sealed segments, a real SQLite
ledger, the purge job's pass and the ``server.py recordings purge --now`` command."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from recording.keys import MasterKey
from recording.manifest import file_report, manifest, verify_files
from recording.retention import DAY, purge
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.service import ParticipantSpec, SessionService
from tests.integration.recording.segments import record

ROOT = Path(__file__).resolve().parents[3]
DAYS = {"mediation": 30, "visitation": 10, "consultation": None}


@pytest.fixture
def ledger(tmp_path):
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite3")
    yield SessionService(store), tmp_path
    store.close()


def recorded(service, data: Path, *, end=True):
    state = service.create_session(
        "mediation",
        actor="staff:wang",
        title="Retention",
        case_number="R-2",
        participants=[ParticipantSpec("W", "mediator"), ParticipantSpec("A", "party", "A")],
    )
    party = next(p for p in state.participants.values() if p.role == "party")
    master = MasterKey.load(data)
    for i in range(2):
        record(service, data / "recordings", master, state.id, party.id, i, start=i)
    if end:
        service.execute(state.id, "staff:wang", decode_command({"type": "end_session"}))
    return state.id


def ended(service, sid) -> float:
    return next(e.ts for e in service.events(sid) if e.type == "session.ended")


def hold(service, sid, on: bool, reason="court order 7/2026"):
    service.execute(
        sid, "staff:boss", decode_command({"type": "set_legal_hold", "hold": on, "reason": reason})
    )


def test_purge_waits_for_the_period_deletes_and_records_it(ledger):
    service, data = ledger
    sid = recorded(service, data)
    live = recorded(service, data, end=False)  # not ended: the clock has not started
    directory = data / "recordings" / sid
    files = sorted(p.name for p in directory.glob("*.seg"))
    assert len(files) == 2
    t0 = ended(service, sid)

    assert purge(service, data / "recordings", DAYS, t0 + 30 * DAY - 1) == []
    assert sorted(p.name for p in directory.glob("*.seg")) == files

    [outcome] = purge(service, data / "recordings", DAYS, t0 + 30 * DAY + 1)
    assert outcome.session == sid and outcome.result == "deleted"
    assert sorted(outcome.files) == files
    assert not directory.exists()  # segments and the wrapped data key are gone
    [deleted] = [e for e in service.events(sid) if e.type == "recording.deleted"]
    assert deleted.actor == "system" and sorted(deleted.data["files"]) == files
    assert deleted.data == {**deleted.data, "reason": "retention", "retention_days": 30}
    assert not verify_chain(service.events(sid))
    assert (data / "recordings" / live).exists()  # a session never ended is kept
    # a second pass finds nothing more to do
    assert purge(service, data / "recordings", DAYS, t0 + 400 * DAY) == []


def test_a_legal_hold_blocks_purge_until_lifted(ledger):
    service, data = ledger
    sid = recorded(service, data)
    t0 = ended(service, sid)
    hold(service, sid, True)
    with pytest.raises(CommandError) as refused:
        hold(service, sid, True)
    assert refused.value.code == "conflict"
    for later in (31, 365, 3650):
        [outcome] = purge(service, data / "recordings", DAYS, t0 + later * DAY)
        assert outcome.result == "held" and "court order" in outcome.detail
    assert len(list((data / "recordings" / sid).glob("*.seg"))) == 2
    assert not [e for e in service.events(sid) if e.type == "recording.deleted"]
    # rooms itself refuses a deletion under hold (the job's check is not the only one)
    with pytest.raises(CommandError):
        service.execute(
            sid,
            "system",
            decode_command(
                {
                    "type": "record_deletion",
                    "files": ["x.seg"],
                    "reason": "retention",
                    "retention_days": 30,
                }
            ),
        )
    hold(service, sid, False, "order lifted 9/2026")
    [outcome] = purge(service, data / "recordings", DAYS, t0 + 31 * DAY)
    assert outcome.result == "deleted"
    types = [e.type for e in service.events(sid) if e.type.startswith("recording.")]
    assert types[-3:] == ["recording.held", "recording.released", "recording.deleted"]
    held = next(e for e in service.events(sid) if e.type == "recording.held")
    assert held.actor == "staff:boss" and held.data["reason"] == "court order 7/2026"


def test_a_crash_after_the_record_is_swept_on_the_next_pass(ledger):
    service, data = ledger
    sid = recorded(service, data)
    directory = data / "recordings" / sid
    files = sorted(p.name for p in directory.glob("*.seg"))
    service.execute(  # recorded, then the process died before unlinking
        sid,
        "system",
        decode_command(
            {"type": "record_deletion", "files": files, "reason": "retention", "retention_days": 30}
        ),
    )
    [outcome] = purge(service, data / "recordings", DAYS, ended(service, sid) + 1)
    assert outcome.result == "swept" and not list(directory.glob("*.seg"))


def test_cli_purge_on_a_simulated_date_and_ledger_verify(ledger):
    service, data = ledger
    sid = recorded(service, data)
    t0 = dt.datetime.fromtimestamp(ended(service, sid), dt.UTC)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "server.py", *args, "--data-dir", str(data)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PARLEY_RETENTION_DAYS_MEDIATION": "30", "PATH": "/usr/bin:/bin"},
        )

    soon = cli("recordings", "purge", "--now", (t0 + dt.timedelta(days=29)).isoformat())
    assert soon.returncode == 0 and "nothing due" in soon.stdout
    assert len(list((data / "recordings" / sid).glob("*.seg"))) == 2
    bad = cli("recordings", "purge", "--now", "next tuesday")
    assert bad.returncode == 2 and "invalid" in bad.stdout
    late = cli("recordings", "purge", "--now", (t0 + dt.timedelta(days=31)).isoformat())
    assert late.returncode == 0 and f"{sid} deleted 2" in late.stdout, late.stdout + late.stderr
    assert not (data / "recordings" / sid).exists()
    verify = cli("ledger", "verify", sid)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_export_expires_with_the_segments_it_was_made_from(ledger):
    """An export is a copy of the recording: purge deletes it too, and names it."""
    import hashlib

    service, data = ledger
    sid = recorded(service, data)
    directory = data / "recordings" / sid
    sources = sorted(p.name for p in directory.glob("*.seg"))
    body = b"sealed export bytes"  # what is inside does not matter to retention
    (directory / "export-000001.exp").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    key_id = next(e.data["key_id"] for e in service.events(sid) if e.type == "recording.segment")
    service.execute(
        sid,
        "staff:wang",
        decode_command(
            {
                "type": "record_export",
                "file": "export-000001.exp",
                "sources": sources,
                "key_id": key_id,
                "bytes": len(body),
                "sha256": digest,
                "plain_sha256": digest,
                "width": 640,
                "height": 240,
                "seconds": 2.0,
                "reason": "court asked for a copy",
                "grant": "reviewer",
            }
        ),
    )
    [outcome] = purge(service, data / "recordings", DAYS, ended(service, sid) + 31 * DAY)
    assert outcome.result == "deleted"
    assert sorted(outcome.files) == sorted([*sources, "export-000001.exp"])
    assert not directory.exists()
    assert not verify_chain(service.events(sid))


def test_deleted_segments_are_reported_as_deleted_not_missing(ledger):
    service, data = ledger
    sid = recorded(service, data)
    directory = data / "recordings" / sid
    before = manifest(service.events(sid))
    assert "deleted" not in before  # nothing deleted yet: the manifest has no such key
    files = sorted(s["file"] for s in before["segments"])
    # the record is written, the unlink has not happened yet (the crash window): still on disk
    service.execute(
        sid,
        "system",
        decode_command(
            {"type": "record_deletion", "files": files, "reason": "retention", "retention_days": 30}
        ),
    )
    m = manifest(service.events(sid))
    [deletion] = m["deleted"]
    assert deletion["files"] == files and deletion["reason"] == "retention"
    rows = file_report(m, directory)
    assert [(name, status) for name, status, _ in rows] == [(f, "deleted") for f in files]
    assert all(r["seq"] == deletion["seq"] and r["on_disk"] for _, _, r in rows)
    assert verify_files(m, directory) == []
    # swept: gone from disk, still deleted (not missing); a second listed file going missing
    # without a deletion is still a problem
    [outcome] = purge(service, data / "recordings", DAYS, ended(service, sid) + 1)
    assert outcome.result == "swept"
    rows = file_report(m, directory)
    assert [status for _, status, _ in rows] == ["deleted"] * 2
    assert not any(r["on_disk"] for _, _, r in rows)
    assert verify_files(m, directory) == []
    m["deleted"][0]["files"] = files[:1]
    assert verify_files(m, directory) == [f"{files[1]}: missing"]
