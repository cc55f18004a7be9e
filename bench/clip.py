"""Pre-encoded test media: a VP8 clip whose frames carry a readable barcode, and an Opus tone.

Bots publish these packets as they are, so a load test spends its CPU on the server, not on
encoding. Each picture is a solid colour (identifies the publisher to a human) with a 24-bit
barcode band on top (8-bit publisher tag + 16-bit frame index, readable after VP8 compression
and downscaling) and a noise box that changes every frame, so P-frames cost real bits. The stream has a keyframe
every `keyframe_every` frames; a bot answers a PLI by jumping to the next keyframe at once (a
keyframe encoded out of sequence would not match the P-frames after it). Clips are cached on
disk, keyed by their parameters.
"""

from __future__ import annotations

import array
import fractions
import hashlib
import math
import os
import pickle
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av

BARCODE_BITS = 24
TAG_BITS = 8
FRAME_BITS = BARCODE_BITS - TAG_BITS
CACHE_VERSION = 1


@dataclass
class VideoClip:
    width: int
    height: int
    fps: int
    frames: list[bytes]  # the encoded stream, loopable (frame 0 is a keyframe)
    keyframe_indices: list[int]


@dataclass
class AudioClip:
    tone_hz: float
    packets: list[bytes]  # 20 ms Opus packets, loopable


def cache_dir() -> Path:
    path = Path(os.environ.get("PARLEY_CLIP_CACHE", Path(tempfile.gettempdir()) / "parley-clips"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(key: tuple, build):
    digest = hashlib.sha256(repr((CACHE_VERSION,) + key).encode()).hexdigest()[:20]
    path = cache_dir() / f"{digest}.pickle"
    if path.exists():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # a torn or stale cache file: rebuild it
            path.unlink(missing_ok=True)
    value = build()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(value))
    os.replace(tmp, path)
    return value


def barcode_value(tag: int, index: int) -> int:
    return ((tag & 0xFF) << FRAME_BITS) | (index & 0xFFFF)


def split_barcode(value: int) -> tuple[int, int]:
    return value >> FRAME_BITS, value & 0xFFFF


def draw_frame(
    width: int, height: int, color: tuple[int, int, int], tag: int, index: int, rng: random.Random
) -> av.VideoFrame:
    """An rgb24 picture: barcode band on top, solid colour below, a noise box bottom-right."""
    cell = width // BARCODE_BITS
    band = max(8, height // 6)
    value = barcode_value(tag, index)
    white, black = b"\xff\xff\xff", b"\x00\x00\x00"
    row = b"".join(
        (white if (value >> (BARCODE_BITS - 1 - i)) & 1 else black) * cell
        for i in range(BARCODE_BITS)
    )
    row += black * (width - cell * BARCODE_BITS)
    background = bytes(color) * width
    box_w, box_h = width // 4, height // 4
    box_x = width - box_w - width // 16
    box_y0 = height - box_h - height // 16
    left = bytes(color) * box_x
    right = bytes(color) * (width - box_x - box_w)
    rows = []
    for y in range(height):
        if y < band:
            rows.append(row)
        elif box_y0 <= y < box_y0 + box_h:
            rows.append(left + rng.randbytes(box_w * 3) + right)
        else:
            rows.append(background)
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    if plane.line_size == width * 3:
        plane.update(b"".join(rows))
    else:  # padded lines
        pad = b"\x00" * (plane.line_size - width * 3)
        plane.update(b"".join(r + pad for r in rows))
    return frame


def _vp8_encoder(width: int, height: int, fps: int, bitrate: int, gop: int):
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    enc.bit_rate = bitrate
    enc.gop_size = gop
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return enc


def _encode_all(enc, pictures: list[av.VideoFrame]) -> list[bytes]:
    out: list[bytes] = []
    for i, picture in enumerate(pictures):
        picture.pts = i
        for packet in enc.encode(picture):
            out.append(bytes(packet))
    for packet in enc.encode(None):
        out.append(bytes(packet))
    return out


def video_clip(
    *,
    color: tuple[int, int, int],
    tag: int,
    width: int = 640,
    height: int = 480,
    fps: int = 15,
    frames: int = 60,
    bitrate: int = 800_000,
    keyframe_every: int | None = None,
) -> VideoClip:
    """The clip for one publisher (built once, then read from the cache)."""

    def build() -> VideoClip:
        rng = random.Random(tag)
        pictures = [
            draw_frame(width, height, color, tag, i, rng).reformat(format="yuv420p")
            for i in range(frames)
        ]
        gop = keyframe_every or 2 * fps
        encoded = _encode_all(_vp8_encoder(width, height, fps, bitrate, gop), pictures)
        if len(encoded) != frames:
            raise RuntimeError("the VP8 encoder dropped frames while building the clip")
        keys = [i for i, f in enumerate(encoded) if is_keyframe(f)]
        if not keys or keys[0] != 0:
            raise RuntimeError("the clip does not start with a keyframe")
        return VideoClip(width, height, fps, encoded, keys)

    key = ("video", color, tag, width, height, fps, frames, bitrate, keyframe_every)
    return _cached(key, build)


def is_keyframe(data: bytes) -> bool:
    return len(data) >= 10 and not (data[0] & 1) and data[3:6] == b"\x9d\x01\x2a"


def audio_clip(*, tone_hz: float, seconds: float = 1.0) -> AudioClip:
    """An Opus sine tone in 20 ms packets."""

    def build() -> AudioClip:
        enc = av.CodecContext.create("libopus", "w")
        enc.sample_rate = 48000
        enc.layout = "mono"
        enc.format = "s16"
        enc.bit_rate = 32000
        packets: list[bytes] = []
        n = int(seconds * 50)
        for f in range(n):
            samples = array.array(
                "h",
                (
                    int(8000 * math.sin(2 * math.pi * tone_hz * (f * 960 + i) / 48000))
                    for i in range(960)
                ),
            )
            frame = av.AudioFrame(format="s16", layout="mono", samples=960)
            frame.sample_rate = 48000
            frame.planes[0].update(samples.tobytes())
            frame.pts = f * 960
            packets.extend(bytes(p) for p in enc.encode(frame))
        packets.extend(bytes(p) for p in enc.encode(None))
        return AudioClip(tone_hz, packets)

    return _cached(("audio", tone_hz, seconds), build)


def read_barcode(frame: av.VideoFrame) -> tuple[int, tuple[int, int, int]] | None:
    """(barcode value, mean colour) of a decoded picture made by `draw_frame`; None if unreadable."""
    small = frame.reformat(width=96, height=72, format="rgb24")
    plane = small.planes[0]
    stride = plane.line_size
    buf = bytes(plane)
    band = max(2, 72 // 6)
    y = band // 2
    cell = 96 * (frame.width // BARCODE_BITS) / frame.width
    value = 0
    for i in range(BARCODE_BITS):
        x = int((i + 0.5) * cell)
        o = y * stride + x * 3
        luma = (buf[o] + buf[o + 1] + buf[o + 2]) / 3
        if 70 < luma < 185:
            return None  # neither black nor white: not our picture (or badly damaged)
        value = (value << 1) | (luma >= 128)
    sums = [0, 0, 0]
    count = 0
    for yy in range(int(72 * 0.45), int(72 * 0.65)):
        for xx in range(4, 30, 2):
            o = yy * stride + xx * 3
            sums[0] += buf[o]
            sums[1] += buf[o + 1]
            sums[2] += buf[o + 2]
            count += 1
    return value, (sums[0] // count, sums[1] // count, sums[2] // count)
