"""Agreement evidence (R12): a sealed agreement's evidence.zip carries the session's recording
manifest, derived from its ledger, and ``server.py verify evidence.zip --recordings DIR`` checks
the stored segments against it offline (real sealed segments, a real signing ceremony, the real
CLI entry point)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import msgspec
import pytest

from recording.keys import MasterKey
from recording.manifest import bundle_manifest
from recording.retention import purge
from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService
from tests.integration.esign.conftest import pki  # noqa: F401 - the fixture
from tests.integration.esign.sealed_case import rezip, run_verify, seal_case, unzip
from tests.integration.recording.segments import record

# server.py verify runs pyHanko's long-term validation: ~20 s a run on a busy two-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def _recorded_and_sealed(pki, tmp_path, *, purged=False):  # noqa: F811
    """A mediation recorded (A: two segments, B: one), then an agreement signed and sealed; the
    bundle is built from the session's ledger plus the ceremony's records, as the desk does.
    ``purged``: the session ended and retention deleted its recording before the bundle."""
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite3")
    service = SessionService(store)
    state = service.create_session(
        "mediation",
        actor="staff:test",
        title="Recorded",
        case_number=None,
        participants=[
            ParticipantSpec("M", "mediator"),
            ParticipantSpec("A", "party", "A"),
            ParticipantSpec("B", "party", "B"),
        ],
    )
    ids = {p.name: p.id for p in state.participants.values()}
    service.execute(
        state.id,
        ids["M"],
        decode_command({"type": "record_consent", "topic": "recording", "given": True}),
    )
    service.execute(state.id, ids["M"], decode_command({"type": "start_recording"}))
    root, master = tmp_path / "recordings", MasterKey.load(tmp_path)
    for who, index in (("A", 0), ("A", 1), ("B", 0)):
        record(service, root, master, state.id, ids[who], index, start=float(index))
    service.execute(state.id, ids["M"], decode_command({"type": "stop_recording"}))
    if purged:
        service.execute(state.id, ids["M"], decode_command({"type": "end_session"}))
        [outcome] = purge(service, root, {"mediation": 0}, time.time() + 1)
        assert outcome.result == "deleted", outcome
    session_ledger = [msgspec.to_builtins(e) for e in service.events(state.id)]
    store.close()

    case = await seal_case(pki, tmp_path / "esign", session_ledger=session_ledger, recordings=None)
    return case.bundle, root / state.id, case.root, session_ledger


def test_the_bundle_carries_the_manifest_and_verify_checks_the_files(pki, tmp_path, capsys):  # noqa: F811
    bundle, directory, root, ledger = asyncio.run(_recorded_and_sealed(pki, tmp_path))
    files = unzip(bundle)
    m = msgspec.json.decode(files["recording-manifest.json"])
    head = msgspec.json.decode(files["ledger-head.json"])
    # sealed: the head lists the manifest's hash
    assert (
        head["members"]["recording-manifest.json"]
        == hashlib.sha256(files["recording-manifest.json"]).hexdigest()
    )
    segments = [e["data"] for e in ledger if e["type"] == "recording.segment"]
    assert [(s["file"], s["sha256"], s["bytes"]) for s in m["segments"]] == [
        (s["file"], s["sha256"], s["bytes"]) for s in segments
    ]
    assert len(m["runs"]) == 1 and m["runs"][0]["stopped"] is not None

    # the recordings directory (the session's is found in it); a file a crash left is named,
    # not counted against the recording
    (directory / "stray-000009.seg").write_bytes(b"PRLYSEG1 not in the ledger")
    code, out = run_verify(capsys, tmp_path, bundle, root, "--recordings", directory.parent)
    assert code == 0 and "RESULT: VERIFIED" in out, out
    assert "[OK  ] recording manifest is the one the sealed ledger states" in out, out
    assert out.count("matches the ledger") == 3, out
    assert "stray-000009.seg: on disk but not in the ledger" in out, out

    # one flipped byte in a stored segment, another one gone: NOT VERIFIED, exit 1, naming both
    changed, gone = (directory / s["file"] for s in m["segments"][:2])
    body = bytearray(changed.read_bytes())
    body[len(body) // 2] ^= 0x01
    changed.write_bytes(bytes(body))
    gone.unlink()
    code, out = run_verify(capsys, tmp_path, bundle, root, "--recordings", directory)
    assert code == 1 and "NOT VERIFIED (2 failed)" in out, out
    assert f"[FAIL] segment {changed.name} matches the ledger: changed" in out, out
    assert f"[FAIL] segment {gone.name} matches the ledger: missing" in out, out


def test_a_manifest_edited_inside_the_bundle_is_not_verified(pki, tmp_path, capsys):  # noqa: F811
    bundle, directory, root, _ = asyncio.run(_recorded_and_sealed(pki, tmp_path))
    files = unzip(bundle)
    m = msgspec.json.decode(files["recording-manifest.json"])
    gone = m["segments"].pop(0)  # hide a segment (and its file) from the evidence
    files["recording-manifest.json"] = msgspec.json.encode(m, order="sorted")
    (directory / gone["file"]).unlink()
    code, out = run_verify(capsys, tmp_path, rezip(files), root, "--recordings", directory)
    assert code == 1 and "NOT VERIFIED" in out, out
    assert "[FAIL] every bundle file is listed in the sealed head" in out
    assert "[FAIL] recording manifest is the one the sealed ledger states" in out
    assert "[FAIL] segment" not in out  # the listed ones match; the seal is what caught it

    # a PDF cannot be checked against recordings: a usage error, exit 2
    code, _ = run_verify(capsys, tmp_path, files["agreement.pdf"], root, "--recordings", directory)
    assert code == 2


def test_segments_deleted_by_retention_are_named_not_missing(pki, tmp_path, capsys):  # noqa: F811
    bundle, directory, root, ledger = asyncio.run(_recorded_and_sealed(pki, tmp_path, purged=True))
    m = msgspec.json.decode(unzip(bundle)["recording-manifest.json"])
    [deletion] = m["deleted"]
    assert sorted(deletion["files"]) == sorted(s["file"] for s in m["segments"])
    assert not directory.exists()
    code, out = run_verify(capsys, tmp_path, bundle, root, "--recordings", directory.parent)
    assert code == 0 and "RESULT: VERIFIED" in out, out
    assert "[OK  ] recording manifest is the one the sealed ledger states" in out, out
    assert "matches the ledger" not in out and "missing" not in out, out
    for s in m["segments"]:
        assert (
            f"{s['file']}: deleted by the ledger's seq {deletion['seq']} (retention, 0 days)" in out
        )


def test_a_session_never_recorded_has_no_manifest():
    ledger = [{"type": "session.created", "seq": 1, "ts": 1.0, "hash": "00", "data": {}}]
    assert bundle_manifest(ledger) is None
    assert bundle_manifest([*ledger, {"type": "recording.started", "seq": 2, "ts": 2.0}])[
        "runs"
    ] == [{"started": 2.0, "started_by": None, "stopped": None, "why": None}]
