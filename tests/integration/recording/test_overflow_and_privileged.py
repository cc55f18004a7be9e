"""The recorder never holds up forwarding (a writer that blocks costs the recording only, and
the ledger says what is missing), and a privileged session's media never reaches a sink (R2)."""

from __future__ import annotations

import threading

from recording.keys import write_durably
from recording.manifest import manifest, verify_files
from rooms.ledger import verify_chain
from rooms.service import ParticipantSpec
from signaling.conductor import media_key
from tests.integration.recording.conftest import decode, until


async def test_a_blocked_writer_drops_for_the_recording_only_and_records_the_gap(
    recorded_factory,
):
    release = threading.Event()
    blocked = threading.Event()

    def slow_disk(path, data):
        blocked.set()
        release.wait(60)  # the disk hangs
        write_durably(path, data)

    r = await recorded_factory(segment_seconds=1.0, max_frames=40, store=slow_disk)
    await r.mediation()
    for name in ("M", "A", "B"):
        r.run(name, type="record_consent", topic="recording", given=True)
    r.run("M", type="start_recording")
    await until(lambda: blocked.is_set(), within=30)
    sink = r.recorder.sessions[r.state.id]
    m, a = r.bot("M"), r.bot("A").name
    await until(lambda: sink.dropped > 0)
    # forwarding goes on while the writer is stuck and the recording drops frames
    seen = m.frames_from(a)
    dropped = sink.dropped
    await until(lambda: m.frames_from(a) > seen + 30 and sink.dropped > dropped + 30)
    assert r.recorder.writer.depth <= 40
    release.set()
    await until(lambda: r.events("recording.gap"))
    r.run("M", type="stop_recording")
    await r.settled()

    events = r.service.events(r.state.id)
    assert verify_chain(events) == []
    man = manifest(events)
    gaps = man["gaps"]
    assert gaps and all(g["reason"] == "queue_full" and g["frames"] > 0 for g in gaps)
    assert {g["participant"] for g in gaps} <= {r.ids["A"], r.ids["B"]}
    assert all(g["wall_end"] >= g["wall_start"] for g in gaps)
    assert verify_files(man, r.directory()) == []
    for s in man["segments"]:  # what was kept still decodes: video resumed on a keyframe
        got = decode(r.open_segment(s["file"]))
        assert got["video"] == s["video_frames"]
    assert r.recorder.stats()["queue_depth_max"] == 40


async def test_a_privileged_session_never_reaches_a_sink(recorded_factory):
    r = await recorded_factory()
    await r.session(
        "privileged",
        [
            ParticipantSpec("Op", "operator"),
            ParticipantSpec("A", "lawyer"),
            ParticipantSpec("B", "inmate"),
        ],
    )
    r.run("Op", type="mark_identity_checked", participant=r.ids["A"], method="in_person")
    for name in ("A", "B"):
        r.run("Op", type="admit", participant=r.ids[name])

    class Counting:
        frames = 0
        ends = 0

        def on_frame(self, publisher, kind, frame):
            self.frames += 1

        def on_end(self, publisher, kind):
            self.ends += 1

    spy = Counting()
    r.engine.attach_sink(media_key(r.state.id, "recorder"), spy)  # as if someone tried
    r.conductor.reconcile()
    lawyer, inmate = r.bot("A"), r.bot("B")
    await until(
        lambda: lawyer.frames_from(inmate.name) > 30 and inmate.frames_from(lawyer.name) > 30
    )
    assert spy.frames == 0
    assert r.state.id not in r.recorder.sessions  # the conductor never made it a sink
    assert not (r.recorder.root / r.state.id).exists()
    assert r.engine.stats()["frames_to_sinks"] == 0
