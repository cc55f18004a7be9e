"""The recorder's health for /readyz: not started, a write stuck on a hung disk, a queue
backlog, a dead writer thread; each seen, and a recovery seen too (a real writer thread)."""

from __future__ import annotations

import threading
import time

from recording import recorder as recorder_module
from recording.keys import DataKey, MasterKey, write_durably
from recording.recorder import Recorder
from recording.writer import SegmentSpec


def _until(predicate, within: float = 10.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met")


async def test_health_sees_a_stuck_write_a_backlog_and_a_dead_writer(tmp_path, monkeypatch):
    release, blocked = threading.Event(), threading.Event()

    def hung_disk(path, data):
        blocked.set()
        release.wait(30)
        write_durably(path, data)

    master = MasterKey.load(tmp_path)
    root = tmp_path / "recordings"
    rec = Recorder(
        root,
        master,
        report=lambda session, command: None,
        request_keyframe=lambda publisher: None,
        max_frames=20,
        store=hung_disk,
    )
    try:
        before = rec.health()
        assert not before["ok"] and not before["started"]  # not bound to the loop yet
        rec.start()
        assert rec.health() | {"queue_depth": 0} == {
            "ok": True,
            "started": True,
            "writer": True,
            "storage": True,
            "queue_depth": 0,
            "queue_limit": 20,
            "backlogged": False,
            "last_failure": None,
        }
        spec = SegmentSpec(
            "s-1",
            "p-00000001",
            "joint",
            0,
            root / "s-1",
            key=lambda: DataKey.for_session(master, root / "s-1", "s-1"),
        )
        w = rec.writer
        w.open(1, spec)
        assert w.frame(1, "audio", b"\xfc\x00", 0.0, True, 1.0)
        w.close(1)
        _until(blocked.is_set)  # the thread is stuck in the write
        for i in range(10):  # frames keep coming: the queue backs up to half its limit
            assert w.frame(2, "audio", b"\xfc\x00", 0.02 * i, True, 1.0)
        h = rec.health()
        assert h["backlogged"] and h["queue_depth"] == 10 and not h["ok"]
        assert h["writer"]  # stuck for less than STALL_SECONDS: not yet called stuck
        monkeypatch.setattr(recorder_module, "STALL_SECONDS", 0.05)
        _until(lambda: not rec.health()["writer"])
        release.set()  # the disk answers again: the node is ready again
        _until(lambda: rec.health()["ok"])
        assert (root / "s-1" / spec.file).is_file()
    finally:
        release.set()
        rec.writer.stop()
    assert not rec.writer.alive
    dead = rec.health()
    assert not dead["ok"] and not dead["writer"]


async def test_a_hung_disk_never_holds_health_and_reads_not_writable(tmp_path, monkeypatch):
    """The directory probe runs in a thread: /readyz answers at once while the disk hangs (on the
    event loop a hung network disk would have stopped the whole node), says ``storage: false``
    once the probe has hung ``PROBE_HUNG_SECONDS``, and true again when the disk answers."""
    monkeypatch.setattr(recorder_module, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(recorder_module, "PROBE_HUNG_SECONDS", 0.3)
    rec = Recorder(
        tmp_path / "recordings",
        MasterKey.load(tmp_path),
        report=lambda session, command: None,
        request_keyframe=lambda publisher: None,
    )
    rec.start()
    release, probing = threading.Event(), threading.Event()
    real_probe = rec._probe  # noqa: SLF001 - the disk's answer, made to hang

    def hung_probe():
        probing.set()
        release.wait(30)
        return real_probe()

    monkeypatch.setattr(rec, "_probe", hung_probe)
    try:
        started = time.monotonic()
        first = rec.health()  # starts the probe, answers with the last one (start's: writable)
        assert time.monotonic() - started < 0.2
        assert first["storage"] and first["ok"], first
        _until(probing.is_set)
        started = time.monotonic()
        _until(lambda: not rec.health()["storage"])  # hung for PROBE_HUNG_SECONDS
        assert time.monotonic() - started >= 0.2
        assert not rec.health()["ok"]
        release.set()  # the disk answers again
        _until(lambda: rec.health()["storage"] and rec.health()["ok"])
    finally:
        release.set()
        rec.writer.stop()


def test_recorders_sharing_a_directory_probe_it_without_tripping_each_other(tmp_path):
    """The workers of one machine share the recordings directory and start together: each
    recorder's start and readiness probes use files of their own, so none fails or reports the
    disk unwritable because another removed the file it was writing (real threads, real disk)."""
    master = MasterKey.load(tmp_path)
    root = tmp_path / "recordings"
    root.mkdir()
    recorders = [
        Recorder(root, master, report=lambda s, c: None, request_keyframe=lambda p: None)
        for _ in range(4)
    ]
    failures: list[str] = []
    go = threading.Barrier(len(recorders))

    def hammer(rec: Recorder) -> None:
        go.wait()
        for _ in range(300):
            try:
                rec.check_writable()  # what start() does
            except OSError as exc:
                failures.append(f"start: {exc!r}")
            if not rec._probe():
                failures.append("ready probe: not writable")

    threads = [threading.Thread(target=hammer, args=(r,)) for r in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert sorted(p.name for p in root.iterdir()) == []  # nothing left behind
    for rec in recorders:
        rec.writer.stop()
