"""One segment's WebM, muxed in memory from encoded frames: no decoder, no encoder.

Every segment declares one VP8 and one Opus track, whatever arrives, so that all segments of a
participant have the same shape. Timestamps are the recorder's media time (seconds on the
session's timeline, from RTP), so a gap in what was sent stays a gap in the file. Audio that
arrives before the segment's first video frame waits (up to a second) so the header can carry the
picture size from that keyframe.
"""

from __future__ import annotations

import fractions
import io
import struct

import av

from media.rtp import vp8_size

TIME_BASE = {"video": fractions.Fraction(1, 90000), "audio": fractions.Fraction(1, 48000)}
RATE = {"video": 90000, "audio": 48000}
PENDING_LIMIT = 50  # audio frames held for the picture size (1 s of 20 ms packets)
DEFAULT_SIZE = (640, 480)
# RFC 7845 identification header: version 1, 2 channels, 312 samples pre-skip, 48 kHz, gain 0,
# mapping family 0 (what browsers negotiate as opus/48000/2).
OPUS_HEAD = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)


class SegmentMuxer:
    """Collects frames of one participant and returns the finished WebM bytes."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self._size = size
        self._buffer = io.BytesIO()
        self._container = None
        self._streams: dict = {}
        self._pending: list[tuple[str, bytes, float, bool]] = []
        self._last: dict[str, int] = {}
        self.frames = {"audio": 0, "video": 0}
        self.first: float | None = None
        self.last: float | None = None

    def add(self, kind: str, data: bytes, media_time: float, keyframe: bool) -> None:
        if self._container is None:
            if kind == "video" and keyframe:
                self._size = vp8_size(data) or self._size
            elif kind == "audio" and len(self._pending) < PENDING_LIMIT:
                self._pending.append((kind, data, media_time, keyframe))
                return
            self._open()
        self._mux(kind, data, media_time, keyframe)

    def _open(self) -> None:
        container = av.open(self._buffer, "w", format="webm")
        # no codec context for video: add_stream would open a libvpx encoder per segment
        # (~9 MB and its start-up CPU) for packets that are already encoded
        width, height = self._size or DEFAULT_SIZE
        video = container.add_mux_stream("vp8", rate=30, width=width, height=height)
        video.time_base = TIME_BASE["video"]
        audio = container.add_stream("opus", rate=48000)
        audio.codec_context.extradata = OPUS_HEAD
        audio.time_base = TIME_BASE["audio"]
        self._container, self._streams = container, {"video": video, "audio": audio}
        pending, self._pending = self._pending, []
        for item in pending:
            self._mux(*item)

    def _mux(self, kind: str, data: bytes, media_time: float, keyframe: bool) -> None:
        pts = round(media_time * RATE[kind])
        last = self._last.get(kind)
        if last is not None and pts <= last:
            pts = last + 1  # a publisher's clock stepped back (reconnect): keep order
        self._last[kind] = pts
        packet = av.Packet(data)
        packet.stream = self._streams[kind]
        packet.time_base = TIME_BASE[kind]
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        self.frames[kind] += 1
        self.first = media_time if self.first is None else min(self.first, media_time)
        self.last = media_time if self.last is None else max(self.last, media_time)

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def finish(self) -> bytes:
        """The complete WebM (empty bytes when no frame arrived)."""
        if self._container is None:
            if not self._pending:
                return b""
            self._open()
        self._container.close()
        return self._buffer.getvalue()
