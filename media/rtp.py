"""RTP as the relay writes it: headers built from a few integers, frames kept as their packets.

Parley forwards the publisher's RTP payloads unchanged (VP8 payload descriptor included) and
writes a new header per subscriber: its sender's SSRC, payload type, sequence numbers and
timestamps, and the header extensions that subscriber's leg negotiated. This module is pure: no
aiortc internals, no I/O, so it is table-tested on its own.
"""

from __future__ import annotations

import struct
import time

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

NTP_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch)

_FIXED = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_EXTENSION_PROFILE = b"\xbe\xde"  # RFC 8285 one-byte header extensions


def ntp_time(now: float | None = None) -> int:
    """Wall-clock time (`now`, default `time.time()`) as 64-bit NTP fixed point."""
    t = (time.time() if now is None else now) + NTP_OFFSET
    high = int(t)
    return (high << 32) | int((t - high) * 4294967296)


def abs_send_time(ntp: int) -> int:
    """The 24-bit abs-send-time of an NTP time: seconds in 6.18 fixed point, wrapped every 64 s."""
    return (ntp >> 14) & 0xFFFFFF


def extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """RFC 8285 one-byte-header extension block (profile, length, elements, zero padding).

    Elements with id 0 are left out (that leg did not negotiate the extension); ids above 14 or
    values of 0 or more than 16 bytes cannot be written in one-byte form and raise ValueError.
    """
    body = bytearray()
    for ext_id, value in elements:
        if ext_id == 0:
            continue
        if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
            raise ValueError(f"one-byte header extension {ext_id} with {len(value)} bytes")
        body.append((ext_id << 4) | (len(value) - 1))
        body += value
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return _EXTENSION_PROFILE + (len(body) // 4).to_bytes(2, "big") + bytes(body)


class ExtensionWriter:
    """One leg's extension block per frame: mid is fixed, abs-send-time and audio level change.

    The common case (mid + abs-send-time, video) is a precomputed prefix + 3 bytes + padding;
    anything else goes through `extension_block`.
    """

    def __init__(self, mid_id: int, mid: bytes, abs_id: int, level_id: int) -> None:
        self.mid_id, self.mid, self.abs_id, self.level_id = mid_id, mid, abs_id, level_id
        self._fixed = extension_block([(mid_id, mid)])
        full = extension_block([(mid_id, mid), (abs_id, b"\0\0\0")]) if abs_id else b""
        cut = 4 + (1 + len(mid) if mid_id else 0) + 1  # profile + length, mid element, abs id
        self._prefix, self._padding = full[:cut], full[cut + 3 :]

    def block(self, abs_time: int, audio_level: tuple[bool, int] | None = None) -> bytes:
        if audio_level is not None and self.level_id:
            vad, level = audio_level
            return extension_block(
                [
                    (self.mid_id, self.mid),
                    (self.abs_id, abs_time.to_bytes(3, "big")),
                    (self.level_id, bytes([(0x80 if vad else 0) | (level & 0x7F)])),
                ]
            )
        if not self.abs_id:
            return self._fixed
        return self._prefix + abs_time.to_bytes(3, "big") + self._padding


def rtp_packet(
    payload_type: int,
    marker: bool,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extensions: bytes,
    payload: bytes,
) -> bytes:
    """One serialized RTP packet (version 2, no CSRC, no padding); `extensions` is a block from
    `extension_block` or empty."""
    first = 0x90 if extensions else 0x80
    second = (0x80 if marker else 0) | payload_type
    return (
        _FIXED.pack(first, second, sequence_number, timestamp & 0xFFFFFFFF, ssrc)
        + extensions
        + payload
    )


def is_rtp_or_rtcp(data: bytes) -> bool:
    """RFC 7983 demultiplexing: a first byte of 128-191 is RTP or RTCP (0-3 STUN, 20-63 DTLS)."""
    return bool(data) and 127 < data[0] < 192


def vp8_descriptor_starts_frame(payload: bytes) -> bool:
    """True when a VP8 RTP payload starts a frame: S bit set and partition index 0 (RFC 7741)."""
    return len(payload) > 0 and (payload[0] & 0x1F) == 0x10


def vp8_is_keyframe(data: bytes) -> bool:
    """A VP8 frame is a keyframe when bit 0 of its tag is 0 and the start code follows."""
    return len(data) >= 10 and not (data[0] & 1) and data[3:6] == b"\x9d\x01\x2a"


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header, else None."""
    if not vp8_is_keyframe(data):
        return None
    return (
        int.from_bytes(data[6:8], "little") & 0x3FFF,
        int.from_bytes(data[8:10], "little") & 0x3FFF,
    )


class EncodedFrame:
    """One complete encoded frame as the RTP packets it arrived in.

    `packets` are aiortc `RtpPacket`s of one publisher: `payload` is the RTP payload as sent (VP8
    descriptor included), `_data` the codec bytes aiortc depayloaded. The relay forwards the
    payloads; `data` (the whole codec frame) is built only for whoever asks (tests, a recorder).
    """

    __slots__ = ("packets", "timestamp", "is_keyframe", "audio_level")

    def __init__(self, packets: list, timestamp: int, is_keyframe: bool) -> None:
        self.packets = packets
        self.timestamp = timestamp
        self.is_keyframe = is_keyframe
        # (voice activity, level in -dBov) from the publisher's ssrc-audio-level, if it sent one
        self.audio_level: tuple[bool, int] | None = (
            packets[0].extensions.audio_level if packets else None
        )

    @property
    def data(self) -> bytes:
        packets = self.packets
        if len(packets) == 1:  # audio, small video frames: no copy
            return packets[0]._data
        return b"".join([p._data for p in packets])
