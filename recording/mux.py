"""One segment's WebM, written from encoded frames in plain Python: no codec, no PyAV.

Every segment declares one VP8 and one Opus track, whatever arrives, so that all segments of a
participant have the same shape. Timestamps are the recorder's media time (seconds on the
session's timeline, from RTP) in milliseconds, so a gap in what was sent stays a gap in the file.
Frames are only collected while the segment is open; the file is laid out once, at the close:
the picture size comes from the segment's first keyframe, blocks are ordered by time, a cluster
starts at each video keyframe (and at least every 5 s), and a seek head points at the cues (one
per keyframe) so a player can seek. Why not PyAV's muxer: its ``mux`` call releases and retakes
the GIL for every frame, and with the event loop busy forwarding each of those is a hand-over
between the two threads (the recorder's largest cost on a loaded server, docs/benchmarks.md).
"""

from __future__ import annotations

import struct
from array import array

from media.rtp import vp8_size

TRACK = {"video": 1, "audio": 2}
VIDEO = TRACK["video"]
DEFAULT_SIZE = (640, 480)
CLUSTER_MS = 5000  # a new cluster at least this often (relative block times are 16-bit)
# RFC 7845 identification header: version 1, 2 channels, 312 samples pre-skip, 48 kHz, gain 0,
# mapping family 0 (what browsers negotiate as opus/48000/2).
OPUS_HEAD = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)
OPUS_DELAY_NS = 312 * 1_000_000_000 // 48000
OPUS_PREROLL_NS = 80_000_000

SEGMENT, SEEK_HEAD, SEEK, INFO, TRACKS, CLUSTER, CUES = (
    b"\x18\x53\x80\x67",
    b"\x11\x4d\x9b\x74",
    b"\x4d\xbb",
    b"\x15\x49\xa9\x66",
    b"\x16\x54\xae\x6b",
    b"\x1f\x43\xb6\x75",
    b"\x1c\x53\xbb\x6b",
)
_BLOCK = struct.Struct(">BhB")  # track number (1-byte vint), relative time, flags
_BLOCK2 = struct.Struct(">BHBhB")  # SimpleBlock's id, a 2-byte vint size, then _BLOCK


def vint(n: int) -> bytes:
    """An EBML element size: the shortest variable-length form (all-ones is reserved)."""
    length = 1
    while n >= (1 << (7 * length)) - 1:
        length += 1
    return ((1 << (7 * length)) | n).to_bytes(length, "big")


def element(ident: bytes, payload: bytes) -> bytes:
    return ident + vint(len(payload)) + payload


def uint(ident: bytes, value: int, width: int = 0) -> bytes:
    return element(ident, value.to_bytes(width or max(1, (value.bit_length() + 7) // 8), "big"))


def double(ident: bytes, value: float) -> bytes:
    return element(ident, struct.pack(">d", value))


EBML_HEADER = element(
    b"\x1a\x45\xdf\xa3",
    uint(b"\x42\x86", 1)  # EBMLVersion
    + uint(b"\x42\xf7", 1)  # EBMLReadVersion
    + uint(b"\x42\xf2", 4)  # EBMLMaxIDLength
    + uint(b"\x42\xf3", 8)  # EBMLMaxSizeLength
    + element(b"\x42\x82", b"webm")  # DocType
    + uint(b"\x42\x87", 4)  # DocTypeVersion
    + uint(b"\x42\x85", 2),  # DocTypeReadVersion
)


def _tracks(width: int, height: int) -> bytes:
    video = element(
        b"\xae",
        uint(b"\xd7", TRACK["video"])  # TrackNumber
        + uint(b"\x73\xc5", TRACK["video"])  # TrackUID
        + uint(b"\x83", 1)  # TrackType: video
        + uint(b"\x9c", 0)  # FlagLacing
        + element(b"\x86", b"V_VP8")
        + element(b"\xe0", uint(b"\xb0", width) + uint(b"\xba", height)),
    )
    audio = element(
        b"\xae",
        uint(b"\xd7", TRACK["audio"])
        + uint(b"\x73\xc5", TRACK["audio"])
        + uint(b"\x83", 2)  # TrackType: audio
        + uint(b"\x9c", 0)
        + element(b"\x86", b"A_OPUS")
        + element(b"\x63\xa2", OPUS_HEAD)  # CodecPrivate
        + uint(b"\x56\xaa", OPUS_DELAY_NS)  # CodecDelay
        + uint(b"\x56\xbb", OPUS_PREROLL_NS)  # SeekPreRoll
        + element(b"\xe1", double(b"\xb5", 48000.0) + uint(b"\x9f", 2)),
    )
    return element(TRACKS, video + audio)


class SegmentMuxer:
    """Collects the frames of one participant's segment; ``finish`` returns the WebM bytes.

    While the segment is open it keeps each frame's bytes (the object it was handed, not a copy)
    and, per frame, its time and its track/key flags in two arrays: nothing else per frame lives
    until the close. With the queue's tuples kept instead (each with its two floats), ten
    three-party rooms held ~20,000 more objects for ~10 s, and the cyclic GC ran 2.4 collections
    a second for them, a full one every ~20 s (docs/benchmarks.md)."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self._size = size
        self._found_size = False
        self._data: list[bytes] = []  # each frame's bytes, in arrival order
        self._ms = array("q")  # its time in the file (ms)
        self._flags = bytearray()  # its track number, | 0x80 for a frame that decodes alone
        self._last: dict[str, int] = {}
        self.frames = {"audio": 0, "video": 0}
        self.first: float | None = None
        self.last: float | None = None

    def add(self, kind: str, data: bytes, media_time: float, keyframe: bool) -> None:
        self.add_queued(((None, kind, data, media_time, keyframe, None),))

    def add_queued(self, items) -> None:
        """Frames as the writer's queue carries them, ``(handle, kind, data, media_time,
        keyframe, wall)``, in arrival order: their bytes are kept, the tuples are not."""
        keep, times, flags = self._data.append, self._ms, self._flags
        last_ms, frames = self._last, self.frames
        first, last = self.first, self.last
        for _, kind, data, media_time, keyframe, _ in items:
            track = TRACK[kind]
            if keyframe and track == VIDEO and not self._found_size:
                size = vp8_size(data)
                if size:
                    self._size, self._found_size = size, True
            ms = round(media_time * 1000)
            if ms < 0:
                ms = 0  # a file's times are unsigned
            previous = last_ms.get(kind)
            if previous is not None and ms <= previous:
                ms = previous + 1  # a publisher's clock stepped back (reconnect): keep order
            last_ms[kind] = ms
            keep(data)
            times.append(ms)
            flags.append(track | 0x80 if keyframe else track)
            frames[kind] += 1
            if first is None or media_time < first:
                first = media_time
            if last is None or media_time > last:
                last = media_time
        self.first, self.last = first, last

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    def finish(self) -> bytes:
        """The complete WebM (empty bytes when no frame arrived)."""
        times = self._ms
        if not times:
            return b""
        frames, flags = self._data, self._flags
        self._data, self._ms, self._flags = [], array("q"), bytearray()
        # ordered by time; stable: same-time frames keep their arrival order
        order = sorted(range(len(times)), key=times.__getitem__)
        width, height = self._size or DEFAULT_SIZE
        info = element(
            INFO,
            uint(b"\x2a\xd7\xb1", 1_000_000)  # TimecodeScale: milliseconds
            + element(b"\x4d\x80", b"parley")  # MuxingApp
            + element(b"\x57\x41", b"parley")  # WritingApp
            + double(b"\x44\x89", float(times[order[-1]])),  # Duration (ms, from 0 as ffmpeg)
        )
        tracks = _tracks(width, height)
        seek_size = len(self._seek_head(0, 0, 0))
        position = seek_size + len(info) + len(tracks)  # from the start of the segment's data
        # the file's pieces in order, the frames' own bytes among them: one copy, the last join
        pieces: list = [b"", b"", b"", b""]  # EBML header and Segment, SeekHead, Info, Tracks
        cues: list[tuple[int, int, int]] = []  # (ms, track, cluster position)
        head_at = -1  # where the open cluster's head goes in `pieces`
        size = 0  # the open cluster's size so far
        start = -1
        append, block2, block = pieces.append, _BLOCK2.pack, _BLOCK.pack
        for i in order:
            ms, f = times[i], flags[i]
            track, key = f & 0x7F, f >= 0x80
            if start < 0 or ms - start >= CLUSTER_MS or (key and track == VIDEO and ms > start):
                if head_at >= 0:
                    pieces[head_at] = head = CLUSTER + vint(size)
                    position += len(head) + size
                head_at = len(pieces)
                timecode = uint(b"\xe7", ms)
                pieces += (b"", timecode)
                start, size = ms, len(timecode)
                if key:  # a cue where a cluster starts on a frame that decodes alone
                    cues.append((ms, track, position))
            elif key and track == VIDEO and cues and cues[-1][2] == position:
                cues[-1] = (cues[-1][0], track, position)  # same time: seek by the picture
            frame = frames[i]
            length = len(frame) + 4  # the SimpleBlock: its 4-byte head and the frame
            if 0x7F <= length < 0x3FFF:  # the usual size: one pack
                append(block2(0xA3, 0x4000 | length, 0x80 | track, ms - start, f & 0x80))
                size += length + 3
            else:
                size_field = vint(length)
                append(b"\xa3" + size_field + block(0x80 | track, ms - start, f & 0x80))
                size += length + 1 + len(size_field)
            append(frame)
        pieces[head_at] = head = CLUSTER + vint(size)
        position += len(head) + size
        cue_points = b"".join(
            element(
                b"\xbb",
                uint(b"\xb3", ms)  # CueTime
                + element(b"\xb7", uint(b"\xf7", track) + uint(b"\xf1", at)),
            )
            for ms, track, at in cues
        )
        tail = element(CUES, cue_points)  # never empty: the first block starts a cluster
        pieces.append(tail)
        data_size = position + len(tail)
        pieces[0] = EBML_HEADER + SEGMENT + (data_size | (1 << 56)).to_bytes(8, "big")
        pieces[1] = self._seek_head(seek_size, seek_size + len(info), position)
        pieces[2], pieces[3] = info, tracks
        return b"".join(pieces)

    @staticmethod
    def _seek_head(info: int, tracks: int, cues: int) -> bytes:
        """Where Info, Tracks and Cues are (fixed-width positions: its size never changes)."""
        entries = ((INFO, info), (TRACKS, tracks), (CUES, cues))
        return element(
            SEEK_HEAD,
            b"".join(
                element(SEEK, element(b"\x53\xab", ident) + uint(b"\x53\xac", at, 8))
                for ident, at in entries
            ),
        )
