"""The writer thread keeps of an open segment's frames only their bytes (and two array entries
each): the tuple the loop handed over is let go at the thread's next turn, not when the segment
closes, and the segment written at the close holds every frame (a real writer thread, sealed on
disk)."""

from __future__ import annotations

import gc
import io
import sys

import av

from recording.keys import DataKey, MasterKey
from recording.sealed import open_sealed
from recording.writer import SegmentSpec, Writer
from tests.support.server_proc import wait_until


def test_an_open_segment_lets_go_of_each_frames_tuple_at_the_next_turn(tmp_path):
    master = MasterKey.load(tmp_path)
    directory = tmp_path / "recordings" / "s-1"
    key = DataKey.for_session(master, directory, "s-1")
    done, failed = [], []
    writer = Writer(done.append, lambda spec, exc: failed.append(exc))
    gc.disable()
    try:
        spec = SegmentSpec("s-1", "p-1", "joint", 0, directory, key=lambda: key)
        packets = [b"\xfc" + bytes([n]) * (40 + n) for n in range(200)]  # each its own object
        sample = packets[::40]
        held = [sys.getrefcount(p) for p in packets]
        gc.collect()
        tracked = len(gc.get_objects())
        writer.open(1, spec)
        for n in range(len(packets)):
            assert writer.frame(1, "audio", packets[n], 2.0 + n * 0.02, True, 1000.0 + n * 0.02)
        # taken by the thread, the segment still open: each frame's bytes are held once, by the
        # segment's list, and its tuple is gone (the GC is off, so no tuple is untracked)
        mine = [packets, sample]

        def only_the_segment_holds_them() -> bool:
            if writer.depth or 1 not in writer._open:  # noqa: SLF001 - not taken yet
                return False
            kept = writer._open[1].muxer._data  # noqa: SLF001 - the open segment's frames
            holders = [
                [r for r in gc.get_referrers(p) if not any(r is m for m in mine)] for p in sample
            ]
            return all(len(h) == 1 and h[0] is kept for h in holders)

        assert wait_until(only_the_segment_holds_them, 10)
        assert [sys.getrefcount(p) - 1 for p in packets] == held
        assert len(gc.get_objects()) - tracked < 20  # not one tuple per frame
        assert 1 in writer._open  # noqa: SLF001 - still open
        writer.close(1)
        assert wait_until(lambda: done or failed, 10)
        assert wait_until(lambda: [sys.getrefcount(p) for p in packets] == held, 10)  # let go
    finally:
        gc.enable()
        writer.stop()
    assert not failed
    (seg,) = done
    assert (seg.wall_start, seg.wall_end) == (1000.0, 1000.0 + 199 * 0.02)
    assert (seg.media_start, seg.media_end) == (2.0, 2.0 + 199 * 0.02)
    assert seg.frames == {"audio": 200, "video": 0} and seg.kinds == ["audio"]
    _, webm = open_sealed(key, (directory / spec.file).read_bytes())
    with av.open(io.BytesIO(webm)) as c:
        assert [bytes(p) for p in c.demux(audio=0) if p.size] == packets
