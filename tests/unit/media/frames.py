"""Encoded frames and a recording frame output for the media unit tests."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from media.rtp import EncodedFrame
from media.slot import SlotTrack

KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" + b"k" * 20  # VP8 keyframe header (320x240)


def rtp_packet(seq: int, ts: int, data: bytes, marker: bool = True, start: bool = True):
    """An aiortc RtpPacket as the receiver leaves it: VP8 payload descriptor + `_data`."""
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(marker))
    p.payload = (b"\x10" if start else b"\x00") + data
    p._data = data
    return p


def encoded(data: bytes, ts: int, seq: int = 0) -> EncodedFrame:
    """A one-packet frame; a keyframe when `data` starts with a VP8 keyframe header."""
    return EncodedFrame([rtp_packet(seq, ts, data)], ts, data[0] & 1 == 0)


class FrameRecorder:
    """A slot's output that records (frame, timestamp); refuses frames while not `ready`."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.sent: list[tuple[EncodedFrame, int]] = []

    def send(self, frame: EncodedFrame, timestamp: int) -> bool:
        if not self.ready:
            return False
        self.sent.append((frame, timestamp))
        return True


def track(kind: str, ready: bool = True) -> tuple[SlotTrack, FrameRecorder]:
    out = FrameRecorder(ready)
    return SlotTrack(kind, out), out
