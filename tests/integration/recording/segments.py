"""Real recorded segments without a call: a short real WebM (VP8 + Opus, encoded by PyAV), sealed
with the session's data key by recording/ and recorded in the ledger by the server-only
``record_segment``, exactly as the recorder's writer does (docs/recording.md)."""

from __future__ import annotations

import array
import fractions
import hashlib
import io
import math

import av

from recording.keys import DataKey, MasterKey, write_durably
from recording.sealed import seal
from rooms.commands import decode_command


def webm(seconds: float = 1.0, color: tuple[int, int, int] = (220, 40, 40), start: float = 0.0):
    """A WebM with one VP8 track (64x48, 10 fps) and one Opus track (a 440 Hz tone), whose
    timestamps begin at ``start`` seconds (media time, as the recorder writes them)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        v = out.add_stream("libvpx", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("libopus", rate=48000, layout="stereo")
        pixels = bytes(color) * (64 * 48)
        n = int(seconds * 10)
        for i in range(n):
            frame = av.VideoFrame(64, 48, "rgb24")
            frame.planes[0].update(pixels)
            frame.pts, frame.time_base = int(start * 10) + i, fractions.Fraction(1, 10)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        samples = int(seconds * 48000) // 960
        for i in range(samples):
            pcm = array.array("h")
            for k in range(960):
                x = int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + k) / 48000))
                pcm.extend((x, x))
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate = 48000
            frame.pts, frame.time_base = int(start * 48000) + i * 960, fractions.Fraction(1, 48000)
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    return buf.getvalue()


def record(
    service,
    root,
    master: MasterKey,
    session: str,
    participant: str,
    index: int,
    *,
    start: float = 0.0,
    seconds: float = 1.0,
    wall: float = 1_800_000_000.0,
) -> dict:
    """Seal and store one segment, and record it; returns its record (and its plaintext)."""
    directory = root / session
    key = DataKey.for_session(master, directory, session)
    plain = webm(seconds, start=start)
    sealed = seal(key, {"session": session, "participant": participant, "index": index}, plain)
    name = f"{participant}-{index:06d}.seg"
    write_durably(directory / name, sealed.data)
    raw = {
        "type": "record_segment",
        "participant": participant,
        "space": service.state(session).policy.main_space,
        "kinds": ["audio", "video"],
        "index": index,
        "file": name,
        "key_id": key.id,
        "media_start": start,
        "media_end": start + seconds,
        "wall_start": wall + start,
        "wall_end": wall + start + seconds,
        "video_frames": int(seconds * 10),
        "audio_frames": int(seconds * 50),
        "bytes": len(sealed.data),
        "sha256": sealed.sha256,
        "plain_sha256": hashlib.sha256(plain).hexdigest(),
    }
    service.execute(session, "system", decode_command(raw))
    return {**raw, "plain": plain}
