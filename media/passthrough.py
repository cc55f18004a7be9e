"""The one place where Parley reaches into aiortc's private internals.

aiortc decodes every received track in a thread per receiver and re-encodes per sender. Parley
forwards encoded frames instead: each receiver's decoder queue is replaced by a `FrameTap` that
hands complete encoded frames (as `av.Packet`) straight to a callback on the event loop, and each
sender packs those packets without encoding (aiortc's own `encoder.pack()` path). Keyframe
requests (PLI/FIR) and feedback (REMB, receiver reports) are intercepted per instance.

Every private name used is listed in `REQUIRED_INTERNALS` and checked by `check_aiortc()` at
start-up, so an aiortc upgrade that moves them fails loudly instead of silently decoding or
dropping keyframe requests. Upgrading aiortc means re-running tests/integration/media.
"""

from __future__ import annotations

import fractions
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiortc
import av
from aiortc import clock, rtcdtlstransport, rtcrtpreceiver, rtcrtpsender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RTCP_PSFB_FIR, RtcpPsfbPacket
from aiortc.utils import uint16_add, uint16_gt

log = logging.getLogger(__name__)

TESTED_AIORTC = "1.16."

# (object, attribute) pairs Parley relies on; name-mangled receiver attributes are checked on a
# real instance in `check_aiortc()`.
_RECEIVER_PRIVATE = (
    "_RTCRtpReceiver__decoder_queue",
    "_RTCRtpReceiver__jitter_buffer",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__decoder_thread",
)
_CLASS_PRIVATE = (
    (rtcrtpreceiver.RTCRtpReceiver, "_send_rtcp_pli"),
    (rtcrtpreceiver.RTCRtpReceiver, "_handle_rtp_packet"),
    (rtcrtpsender.RTCRtpSender, "_send_keyframe"),
    (rtcrtpsender.RTCRtpSender, "_handle_rtcp_packet"),
    (rtcrtpreceiver, "decoder_worker"),
    (JitterBuffer, "_remove_frame"),
    (JitterBuffer, "remove"),
    (rtcdtlstransport.RtpRouter, "route_rtcp"),
    (clock, "current_ntp_time"),
)

# aiortc's video jitter buffer releases nothing past a missing packet until 512 packets pile up
# (2-5 s of frozen video). Parley's gives up after MAX_HOLE_WAIT instead: enough for a NACK round
# trip, short enough that the freeze after an unrecovered loss stays under a second.
VIDEO_JITTER_CAPACITY = 128
MAX_HOLE_WAIT = 0.25

VIDEO_CLOCK = fractions.Fraction(1, 90000)
AUDIO_CLOCK = fractions.Fraction(1, 48000)


class AiortcIncompatible(RuntimeError):
    """aiortc's internals are not what this module was written against."""


def check_aiortc() -> None:
    """Refuse to run on an aiortc whose private hook points moved (raises AiortcIncompatible)."""
    problems = []
    if not aiortc.__version__.startswith(TESTED_AIORTC):
        problems.append(f"aiortc {aiortc.__version__} (tested: {TESTED_AIORTC}*)")
    for owner, name in _CLASS_PRIVATE:
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    jb = JitterBuffer(capacity=4, is_video=True)
    if not all(hasattr(jb, a) for a in ("_packets", "_origin", "_capacity")):
        problems.append("JitterBuffer no longer keeps _packets/_origin/_capacity")
    # What the code does, read from its source (skipped when the source is not installed)
    texts = {
        "decoder_worker no longer reads (codec, frame) tasks from its queue": (
            getattr(rtcrtpreceiver, "decoder_worker", None),
            ["input_q.get()", "task is None"],
        ),
        "RTCRtpReceiver._handle_rtp_packet no longer feeds __decoder_queue": (
            getattr(rtcrtpreceiver.RTCRtpReceiver, "_handle_rtp_packet", None),
            ["self.__decoder_queue.put((codec, encoded_frame))"],
        ),
        "RTCRtpReceiver.__init__ no longer sets the attributes Parley replaces": (
            rtcrtpreceiver.RTCRtpReceiver.__init__,
            ["self.__" + name.split("__", 1)[1] for name in _RECEIVER_PRIVATE],
        ),
    }
    for problem, (obj, needles) in texts.items():
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            log.warning("aiortc source not installed: cannot check %s", problem.split(" ")[0])
            continue
        if not all(n in source for n in needles):
            problems.append(problem)
    if problems:
        raise AiortcIncompatible(
            "Parley's passthrough forwarding cannot hook this aiortc: " + "; ".join(problems)
        )


NTP_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch)


def fast_ntp_time() -> int:
    """aiortc's `clock.current_ntp_time()` without building two datetimes (it runs twice per
    sent RTP packet: abs-send-time and the sender report clock); 64-bit NTP fixed point."""
    t = time.time() + NTP_OFFSET
    high = int(t)
    return (high << 32) | int((t - high) * 4294967296)


def install_fast_clock() -> Callable[[], None]:
    """Replace aiortc's NTP clock process-wide; returns a function that puts it back."""
    original = clock.current_ntp_time
    clock.current_ntp_time = fast_ntp_time

    def restore() -> None:
        clock.current_ntp_time = original

    return restore


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


class VideoJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but a hole that NACK did not fill is skipped after a time limit.

    A stall is a packet of a *later* frame arriving while no frame can be released. Once it has
    lasted `max_wait`, everything before the newest packet is dropped and `pli_flag` is raised:
    the receiver then reports upstream loss, subscribers wait for a keyframe and one is asked
    for. The partial frame left behind is never a decodable keyframe, so gating discards it.
    """

    def __init__(self, capacity: int = VIDEO_JITTER_CAPACITY, max_wait: float = MAX_HOLE_WAIT):
        super().__init__(capacity=capacity, is_video=True)
        self._max_wait = max_wait
        self._stalled_since: float | None = None
        self._highest: int | None = None
        self.holes_skipped = 0
        self.errors = 0

    def add(self, packet):  # type: ignore[override]
        try:
            return self._add(packet)
        except Exception:
            # An exception here would end the peer's whole DTLS receive loop: empty the buffer
            # and resync on a keyframe instead, and say so once.
            self.errors += 1
            if self.errors == 1:
                log.exception("video jitter buffer failed; resetting it")
            self._packets = [None] * self._capacity
            self._origin = None
            self._highest = self._stalled_since = None
            return True, None

    def _add(self, packet):
        pli_flag, frame = super().add(packet)
        if frame is not None or pli_flag:
            self._stalled_since = None
            return pli_flag, frame
        seq = packet.sequence_number
        offset = uint16_add(seq, -self._origin)
        if offset >= self._capacity:
            return False, None  # older than the buffer (a late retransmission): not stored
        late = self._highest is not None and not uint16_gt(seq, self._highest)
        if not late:
            self._highest = seq
        head = self._packets[self._origin % self._capacity]
        if head is not None and head.timestamp == packet.timestamp:
            if packet.marker or late:  # the last packet, or a retransmission filling a hole
                return False, self._release_complete(head.timestamp)
            return False, None  # the current frame is still arriving
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
            return False, None
        if now - self._stalled_since < self._max_wait:
            return False, None
        self._stalled_since = None
        self.holes_skipped += 1
        self.remove(offset)
        return True, self._remove_frame(seq)

    def _release_complete(self, timestamp: int) -> JitterFrame | None:
        """Release the head frame as soon as it is complete: no hole up to its marked packet.

        aiortc waits for the first packet of the *next* frame, one frame interval later (67 ms
        at 15 fps); an SFU forwards at once.
        """
        packets = []
        for i in range(self._capacity):
            p = self._packets[(self._origin + i) % self._capacity]
            if p is None or p.timestamp != timestamp:
                return None
            packets.append(p)
            if p.marker:
                self.remove(len(packets))
                return JitterFrame(data=b"".join(x._data for x in packets), timestamp=timestamp)
        return None


class AudioPassBuffer:
    """Stands in for the audio jitter buffer: each Opus packet is a frame, forwarded at once.

    aiortc's audio buffer holds 4 packets (80 ms) for its decoder; the subscriber's own jitter
    buffer does that job, so the SFU only drops duplicates and packets older than the last one.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._last is not None and not uint16_gt(seq, self._last):
            return False, None
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


FrameCallback = Callable[[av.Packet], None]


class FrameTap:
    """Stands in for a receiver's decoder queue: complete frames go to `on_frame`, not a thread.

    aiortc still starts its decoder thread on `receive()`; with this tap the thread only blocks in
    `get()` until the receiver stops, then ends (no decoding ever happens in it).
    """

    def __init__(self, kind: str, on_frame: FrameCallback) -> None:
        self._on_frame = on_frame
        self._time_base = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        self._is_video = kind == "video"
        self._stopped = threading.Event()
        self.errors = 0

    def put(self, task: Any) -> None:
        if task is None:
            self._stopped.set()
            return
        _codec, frame = task
        data = frame.data
        packet = av.Packet(data)
        packet.pts = packet.dts = frame.timestamp
        packet.time_base = self._time_base
        packet.is_keyframe = vp8_is_keyframe(data) if self._is_video else True
        try:
            self._on_frame(packet)
        except Exception:  # never let forwarding end the publisher's receive loop
            self.errors += 1
            if self.errors == 1:
                log.exception("forwarding a frame failed")

    def get(self) -> None:
        self._stopped.wait()
        return None

    def stop(self) -> None:
        self._stopped.set()


def tap_receiver(
    receiver: rtcrtpreceiver.RTCRtpReceiver, kind: str, on_frame: FrameCallback
) -> FrameTap:
    """Route `receiver`'s encoded frames to `on_frame`. Must run before the connection starts."""
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("tap_receiver() must be called before the receiver starts")
    tap = FrameTap(kind, on_frame)
    receiver._RTCRtpReceiver__decoder_queue = tap
    receiver._RTCRtpReceiver__jitter_buffer = (
        VideoJitterBuffer() if kind == "video" else AudioPassBuffer()
    )
    return tap


def media_ssrcs(receiver: rtcrtpreceiver.RTCRtpReceiver) -> list[int]:
    """SSRCs the publisher sends media on, retransmission (RTX) SSRCs filtered out."""
    rtx = receiver._RTCRtpReceiver__rtx_ssrc
    return [s.source for s in receiver.getSynchronizationSources() if s.source not in rtx]


def on_upstream_loss(
    receiver: rtcrtpreceiver.RTCRtpReceiver, callback: Callable[[int], Awaitable[None]]
) -> None:
    """Call `callback(media_ssrc)` instead of aiortc's own PLI when its jitter buffer gives up."""
    receiver._send_rtcp_pli = callback


async def send_pli(receiver: rtcrtpreceiver.RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a picture loss indication upstream (aiortc's original, unwrapped method)."""
    await rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli(receiver, media_ssrc)


def route_fir(dtls: Any) -> None:
    """Deliver FIRs to the senders they name.

    aiortc routes payload-specific feedback by its media-SSRC field, which a FIR sets to 0 (RFC
    5104: the targets are in the FCI), so a subscriber's FIR would reach no sender.
    """
    router = dtls._rtp_router
    route = router.route_rtcp

    def route_rtcp(packet: Any) -> set:
        recipients = route(packet)
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_FIR:
            fci = packet.fci
            for offset in range(0, len(fci) - 7, 8):
                sender = router.senders.get(int.from_bytes(fci[offset : offset + 4], "big"))
                if sender is not None:
                    recipients.add(sender)
        return recipients

    router.route_rtcp = route_rtcp


RtcpCallback = Callable[[Any], None]


def hook_sender(
    sender: rtcrtpsender.RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_feedback: RtcpCallback | None = None,
) -> None:
    """Relay a subscriber's PLI/FIR upstream and show its REMB / reports to `on_feedback`.

    In the pack path aiortc's `_send_keyframe` only sets a flag nobody reads, and REMB goes to an
    encoder that does not run; both are replaced on this instance only.
    """
    sender._send_keyframe = on_keyframe_request
    if on_feedback is None:
        return
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        on_feedback(packet)
        await original(packet)

    sender._handle_rtcp_packet = handle
