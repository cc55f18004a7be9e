"""R1 through the real recorder: a visit goes live only after the recorder reported ready, and a
recorder that cannot write holds the visit and leaves the failure and the gap in the ledger."""

from __future__ import annotations

from rooms.plan import plan
from rooms.service import ParticipantSpec
from tests.integration.recording.conftest import until


async def test_the_recorder_reports_ready_and_a_write_failure_holds_the_visit(recorded_factory):
    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    r = await recorded_factory(segment_seconds=1.0, store=full_disk)
    await r.session(
        "visitation",
        [
            ParticipantSpec("Op", "operator"),
            ParticipantSpec("A", "visitor"),
            ParticipantSpec("B", "inmate"),
        ],
    )
    await until(lambda: r.events("recording.ready"))  # the recorder said so, not a person
    assert r.events("recording.ready")[0].actor == "system"
    r.run("A", type="record_consent", topic="session_rules", given=True)
    r.run("Op", type="mark_identity_checked", participant=r.ids["A"], method="in_person")
    r.run("Op", type="start_recording")
    for name in ("B", "A"):
        r.run("Op", type="admit", participant=r.ids[name])
    assert r.state.recorder == "ready" and plan(r.state)

    await until(lambda: r.events("recording.failed"), within=30)
    [failed] = r.events("recording.failed")
    assert "No space left" in failed.data["reason"]
    gaps = r.events("recording.gap")
    assert gaps and gaps[0].data["reason"] == "write_failed"
    held = [e for e in r.events("participant.moved") if e.data["reason"] == "recorder_failed"]
    assert {e.data["participant"] for e in held} == {r.ids["A"], r.ids["B"]}
    assert plan(r.state) == frozenset() and not r.state.recording
    assert not list(r.directory().glob("*.seg"))
