"""The one place where Parley reaches into aiortc's (and aioice's) private internals.

aiortc decodes every received track in a thread per receiver and re-encodes per sender. Parley
relays RTP instead. Receive side: SRTP is handled in the socket callback (`receive_directly`),
each receiver's jitter buffer is replaced by one that releases complete frames as the RTP packets
they arrived in (`EncodedFrame`), and its decoder queue by a `FrameTap` that hands them straight
to a callback on the event loop. Send side: an `RtpRelay` takes over each slot sender's RTP
output: for each subscriber it writes a new header in front of the publisher's payloads, encrypts
and sends at once, with no encoder, no packetizer, no queue and no task switch per frame; it keeps
what aiortc's RTCP needs (sender-report counters) and answers NACKs from its own history.
Keyframe requests (PLI/FIR) and feedback (REMB, receiver reports) are intercepted per instance;
aiortc's RTCP loops are made to wake together (`install_rtcp_coalescing`).

Every name of aiortc, aioice and asyncio used outside their public API is listed in `HOOKS`
(what the surrounding code must do with it in `_SOURCE_CONTRACT`) and checked by `check_aiortc()`
at start-up, which refuses to run when one moved or when it cannot check, so an aiortc upgrade
fails loudly instead of silently decoding or dropping keyframe requests. Upgrading aiortc means
re-running tests/integration/media.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Any

import aioice
import aiortc
import aiortc.rate
import pylibsrtp
from aiortc import clock, rtcdtlstransport, rtcrtpreceiver, rtcrtpsender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    is_rtcp,
)
from aiortc.utils import uint16_add, uint16_gt

from media import rtp
from media.rtp import EncodedFrame
from media.windowrate import WindowRate

log = logging.getLogger(__name__)

DTLS_CONNECTED = rtcdtlstransport.State.CONNECTED
DTLS_ENDED = (rtcdtlstransport.State.CLOSED, rtcdtlstransport.State.FAILED)

TESTED_AIORTC = "1.16."
TESTED_AIOICE = "0.13."

# Every name of aiortc, aioice and asyncio that media/ uses outside their public API, or replaces
# (per instance or process-wide): (owner, name, how it is checked). tests/unit/media/
# test_hook_contract.py reads media/*.py and fails on such a use that is not listed here.
#   "attr":     the module or class has it (a module global, a method, a class attribute);
#   "instance": a freshly built instance has it (set in its __init__), see `_probe_instances`;
#   "source":   aiortc sets it while running: a `_SOURCE_CONTRACT` entry reads the line that does.
HOOKS: tuple[tuple[str, str, str], ...] = (
    # process-wide replacements (engine.start) and module-level functions
    ("aiortc.clock", "current_ntp_time", "attr"),
    ("aiortc.rtcrtpsender", "asyncio", "attr"),
    ("aiortc.rtcrtpreceiver", "asyncio", "attr"),
    ("aiortc.rtcrtpreceiver", "decoder_worker", "attr"),
    ("aioice.ice", "CONSENT_INTERVAL", "attr"),
    ("aioice.ice", "CONSENT_FAILURES", "attr"),
    ("aioice.ice", "get_host_addresses", "attr"),
    # receive side
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "receive", "attr"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_handle_rtp_packet", "attr"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_send_rtcp_pli", "attr"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_send_rtcp_nack", "attr"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_run_rtcp", "attr"),
    (
        "aiortc.rtcrtpreceiver:RTCRtpReceiver",
        "_RTCRtpReceiver__remote_bitrate_estimator",
        "instance",
    ),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__decoder_queue", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__jitter_buffer", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__rtx_ssrc", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__decoder_thread", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__decoder_error", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__rtcp_started", "instance"),
    ("aiortc.rtcrtpreceiver:RTCRtpReceiver", "_RTCRtpReceiver__rtcp_exited", "instance"),
    ("aiortc.rate:RemoteBitrateEstimator", "incoming_bitrate", "instance"),
    ("aiortc.jitterbuffer:JitterBuffer", "add", "attr"),
    ("aiortc.jitterbuffer:JitterBuffer", "remove", "attr"),
    ("aiortc.jitterbuffer:JitterBuffer", "_remove_frame", "attr"),  # overridden
    ("aiortc.jitterbuffer:JitterBuffer", "_packets", "instance"),
    ("aiortc.jitterbuffer:JitterBuffer", "_origin", "instance"),
    ("aiortc.jitterbuffer:JitterBuffer", "_capacity", "instance"),
    ("aiortc.rtp:RtpPacket", "_data", "source"),
    # send side
    ("aiortc.rtcrtpsender:RTCRtpSender", "send", "attr"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_send_keyframe", "attr"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_handle_rtcp_packet", "attr"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_retransmit", "attr"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_run_rtcp", "attr"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_ssrc", "instance"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_RTCRtpSender__rtp_started", "instance"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_RTCRtpSender__rtp_exited", "instance"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_RTCRtpSender__rtcp_started", "instance"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_RTCRtpSender__rtcp_exited", "instance"),
    ("aiortc.rtcrtpsender:RTCRtpSender", "_rtx_ssrc", "instance"),
    # transports
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "start", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_register_rtp_sender", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_send_rtp", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_recv_next", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_handle_rtp_data", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_handle_rtcp_data", "attr"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_rtp_router", "instance"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_state", "instance"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_rx_srtp", "instance"),
    ("aiortc.rtcdtlstransport:RTCDtlsTransport", "_tx_srtp", "instance"),
    ("aiortc.rtcdtlstransport:RtpRouter", "route_rtcp", "attr"),
    ("aiortc.rtcdtlstransport:RtpRouter", "senders", "instance"),
    ("aiortc.rtcicetransport:RTCIceTransport", "start", "attr"),
    ("aiortc.rtcicetransport:RTCIceTransport", "_connection", "instance"),
    ("aioice.ice:Connection", "data_received", "attr"),
    ("aioice.ice:Connection", "sendto", "attr"),
    ("aioice.ice:Connection", "_protocols", "instance"),
    ("aioice.ice:Connection", "_nominated", "instance"),
    ("aioice.ice:StunProtocol", "datagram_received", "attr"),
    ("aioice.ice:StunProtocol", "send_data", "attr"),
    # asyncio: DirectReceive resumes a handler that awaited a future, as a Task would
    ("asyncio:Future", "_asyncio_future_blocking", "attr"),
)

# What the code does, read from its source: (what breaks, function, the lines it must contain).
_SOURCE_CONTRACT = (
    (
        "RTCRtpSender.stop() waits on its task Events even when never started (_UNSTARTED)",
        lambda: rtcrtpsender.RTCRtpSender.stop,
        ["if self.__started:", "self.__rtp_started.wait()"],
    ),
    (
        "RTCRtpReceiver.stop() waits on its RTCP Events even when never started (_UNSTARTED)",
        lambda: rtcrtpreceiver.RTCRtpReceiver.stop,
        ["if self.__started:", "await self.__rtcp_started.wait()"],
    ),
    (
        "decoder_worker no longer reads (codec, frame) tasks from its queue",
        lambda: rtcrtpreceiver.decoder_worker,
        ["input_q.get()", "task is None"],
    ),
    (
        "RTCRtpReceiver._handle_rtp_packet no longer feeds __jitter_buffer / __decoder_queue",
        lambda: rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet,
        [
            "self.__jitter_buffer.add(packet)",
            "self.__decoder_queue.put((codec, encoded_frame))",
            "packet._data = depayload(codec, packet.payload)",
        ],
    ),
    (
        "RTCDtlsTransport no longer routes RTCP to a sender through _register_rtp_sender",
        lambda: rtcdtlstransport.RTCDtlsTransport._register_rtp_sender,
        ["self._rtp_router.register_sender(sender, ssrc=sender._ssrc)"],
    ),
    (
        "RTCRtpSender's RTCP loop no longer sleeps through its module's asyncio",
        lambda: rtcrtpsender.RTCRtpSender._run_rtcp,
        ["await asyncio.sleep(0.5 + random.random())"],
    ),
    (
        "RTCRtpReceiver's RTCP loop no longer sleeps through its module's asyncio",
        lambda: rtcrtpreceiver.RTCRtpReceiver._run_rtcp,
        ["await asyncio.sleep(0.5 + random.random())"],
    ),
    (
        "RTCRtpSender no longer answers NACKs through self._retransmit",
        lambda: rtcrtpsender.RTCRtpSender._handle_rtcp_packet,
        ["await self._retransmit(seq)"],
    ),
    (
        "RTCDtlsTransport no longer encrypts RTP with _tx_srtp once connected",
        lambda: rtcdtlstransport.RTCDtlsTransport._send_rtp,
        ["self._state != State.CONNECTED", "self._tx_srtp.protect(data)"],
    ),
    (
        "aioice no longer sends through the nominated pair's protocol",
        lambda: aioice.Connection.sendto,
        ["self._nominated.get(component)", "active_pair.protocol.send_data(data, active_pair"],
    ),
    (
        "aioice no longer queues received datagrams in Connection.data_received",
        lambda: aioice.Connection.data_received,
        ["self._queue.put_nowait((data, component))"],
    ),
    (
        "RTCDtlsTransport no longer decrypts SRTP/SRTCP with _rx_srtp and hands it to its handlers",
        lambda: rtcdtlstransport.RTCDtlsTransport._recv_next,
        [
            "self._rx_srtp.unprotect_rtcp(data)",
            "await self._handle_rtcp_data(data)",
            "self._rx_srtp.unprotect(data)",
            "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        ],
    ),
    (
        "aioice's StunProtocol no longer hands non-STUN datagrams to its connection",
        lambda: aioice.ice.StunProtocol.datagram_received,
        ["stun.parse_message(data)", "self.receiver.data_received(data, self.local_candidate"],
    ),
    (
        "aioice's Connection no longer keeps its protocols in _protocols",
        lambda: aioice.Connection.close,
        ["self._protocols"],
    ),
    (
        "aiortc's REMB estimator no longer keeps its incoming bitrate in a RateCounter",
        lambda: aiortc.rate.RemoteBitrateEstimator.__init__,
        ["self.incoming_bitrate = RateCounter(1000, 8000)"],
    ),
    (
        "aioice's StunProtocol.send_data no longer writes to its transport",
        lambda: aioice.ice.StunProtocol.send_data,
        ["self.transport.sendto(data, addr)"],
    ),
    (
        "aioice's consent check no longer reads CONSENT_INTERVAL / CONSENT_FAILURES at run time",
        lambda: aioice.Connection.query_consent,
        ["CONSENT_INTERVAL * (", "failures >= CONSENT_FAILURES"],
    ),
    (
        "aioice no longer finds its host addresses through get_host_addresses",
        lambda: aioice.Connection.gather_candidates,
        ["addresses = get_host_addresses("],
    ),
)


class AiortcIncompatible(RuntimeError):
    """aiortc's internals are not what this module was written against."""


def _resolve(owner: str) -> Any:
    """ "package.module:Class" (or a module name) to the object; AttributeError if it moved."""
    module, _, qualname = owner.partition(":")
    target: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        target = getattr(target, part)
    return target


def _defines(target: Any, name: str) -> bool:
    """A module has `name`, or a class or one of its bases *from the same package* defines it
    (asyncio.DatagramProtocol's no-op `datagram_received` must not stand in for aioice's)."""
    if not isinstance(target, type):
        return hasattr(target, name)
    package = target.__module__.split(".")[0]
    return any(name in vars(k) for k in target.__mro__ if k.__module__.split(".")[0] == package)


def _probe_instances() -> dict[str, Any]:
    """Fresh, never started instances of the classes whose instance attributes are hooked.

    Nothing is opened: no socket, no task, no thread (the certificate is the only cost, ~10 ms).
    """
    from aiortc.jitterbuffer import JitterBuffer as AiortcJitterBuffer
    from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

    ice = RTCIceTransport(RTCIceGatherer())
    dtls = rtcdtlstransport.RTCDtlsTransport(
        ice, [rtcdtlstransport.RTCCertificate.generateCertificate()]
    )
    return {
        "aiortc.rtcrtpreceiver:RTCRtpReceiver": rtcrtpreceiver.RTCRtpReceiver("video", dtls),
        "aiortc.rtcrtpsender:RTCRtpSender": rtcrtpsender.RTCRtpSender("video", dtls),
        "aiortc.rate:RemoteBitrateEstimator": aiortc.rate.RemoteBitrateEstimator(),
        "aiortc.jitterbuffer:JitterBuffer": AiortcJitterBuffer(capacity=16, is_video=True),
        "aiortc.rtcdtlstransport:RTCDtlsTransport": dtls,
        "aiortc.rtcdtlstransport:RtpRouter": rtcdtlstransport.RtpRouter(),
        "aiortc.rtcicetransport:RTCIceTransport": ice,
        "aioice.ice:Connection": aioice.Connection(ice_controlling=False),
    }


def _instances_on_a_loop() -> dict[str, Any]:
    """`_probe_instances()`, on a loop of its own when none runs (aiortc's sender asks for the
    current loop when built; engine.start runs on one, a synchronous caller may not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _probe_instances()

    async def probe() -> dict[str, Any]:
        return _probe_instances()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(probe())
    finally:
        loop.close()


def _problems() -> list[str]:
    problems = []
    if not aiortc.__version__.startswith(TESTED_AIORTC):
        problems.append(f"aiortc {aiortc.__version__} is untested (tested: {TESTED_AIORTC}*)")
    if not aioice.__version__.startswith(TESTED_AIOICE):
        problems.append(f"aioice {aioice.__version__} is untested (tested: {TESTED_AIOICE}*)")
    instances = _instances_on_a_loop()
    for owner, name, kind in HOOKS:
        where = owner.replace(":", ".")
        if kind == "attr":
            try:
                present = _defines(_resolve(owner), name)
            except (ImportError, AttributeError):
                present = False
            if not present:
                problems.append(f"{where}.{name} is missing")
        elif kind == "instance" and not hasattr(instances[owner], name):
            problems.append(f"{where} instances have no {name}")
    for problem, get, needles in _SOURCE_CONTRACT:
        try:
            function = get()
        except AttributeError as exc:
            problems.append(f"{problem} ({exc})")
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError) as exc:
            # No source, no check: a hook that moved would then fail silently at run time.
            name = getattr(function, "__qualname__", repr(function))
            problems.append(f"cannot read the source of {name} to check it ({exc})")
            continue
        missing = [n for n in needles if n not in source]
        if missing:
            problems.append(f"{problem} (missing: {', '.join(missing)})")
    return problems


def check_aiortc() -> None:
    """Refuse to run unless every hook in HOOKS and `_SOURCE_CONTRACT` is where this module
    expects it (raises AiortcIncompatible naming what moved, also when the check cannot run)."""
    versions = f"aiortc {aiortc.__version__}, aioice {aioice.__version__}"
    try:
        problems = _problems()
    except Exception as exc:
        raise AiortcIncompatible(
            f"cannot check Parley's hooks into {versions}: {exc!r}; refusing to start"
        ) from exc
    if problems:
        raise AiortcIncompatible(
            f"Parley's passthrough forwarding cannot hook {versions}: " + "; ".join(problems)
        )


def fast_ntp_time() -> int:
    """aiortc's `clock.current_ntp_time()` without building two datetimes (its RTCP and
    receive paths call it); 64-bit NTP fixed point."""
    return rtp.ntp_time()


def install_fast_clock() -> Callable[[], None]:
    """Replace aiortc's NTP clock process-wide; returns a function that puts it back."""
    original = clock.current_ntp_time
    clock.current_ntp_time = fast_ntp_time

    def restore() -> None:
        clock.current_ntp_time = original

    return restore


# aiortc runs one RTCP loop per sender and per receiver, each sleeping 0.5-1.5 s on its own timer:
# with a few dozen peers that is a hundred event-loop wakeups a second, and a wakeup costs ~0.2 ms
# of CPU on the machines measured (docs/benchmarks.md). Sleeps of RTCP_COALESCE_MIN or more in
# aiortc's sender and receiver modules end on a shared RTCP_GRID instead, so they wake together.
RTCP_GRID = 0.25
RTCP_INTERVAL = 1.0  # a slot sender's mean report interval (0.5-1.5x, aiortc's)
RTCP_COALESCE_MIN = 0.1


class CoalescingAsyncio:
    """The `asyncio` module as aiortc's RTP sender and receiver modules see it: unchanged, but
    long sleeps are rounded up to the next RTCP_GRID instant of the loop's clock."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay >= RTCP_COALESCE_MIN:
            now = self._real.get_running_loop().time()
            delay = math.ceil((now + delay) / RTCP_GRID) * RTCP_GRID - now
        return await self._real.sleep(delay, result)


def install_rtcp_coalescing() -> Callable[[], None]:
    """Make aiortc's RTCP loops wake together, process-wide; returns a function that undoes it."""
    modules = (rtcrtpsender, rtcrtpreceiver)
    originals = [m.asyncio for m in modules]
    for m in modules:
        m.asyncio = CoalescingAsyncio(asyncio)

    def restore() -> None:
        for m, original in zip(modules, originals, strict=True):
            m.asyncio = original

    return restore


# ---------------------------------------------------------------------------------------------
# Receive side

# aiortc's video jitter buffer releases nothing past a missing packet until 512 packets pile up
# (2-5 s of frozen video). Parley's waits for the NACK round trip instead: it asks again for the
# missing packets once a retransmission is overdue (aiortc's receiver asks only once, when it
# sees the gap) and gives up after two such rounds, at least MIN_HOLE_WAIT (the wait before the
# publisher's round trip is known, and on short links), at most MAX_HOLE_WAIT. A complete
# keyframe behind a hole ends the wait at once; a hole of BURST_PACKETS or more (a loss burst)
# asks the publisher for a keyframe at once, in parallel with the NACKs.
VIDEO_JITTER_CAPACITY = 256  # ~1 s of video at 2 Mbit/s: the longest wait must fit
MIN_HOLE_WAIT = 0.25
MAX_HOLE_WAIT = 1.0
HOLE_WAIT_MARGIN = 0.05  # on top of two retransmission timeouts (scheduling, the publisher's turn)
BURST_PACKETS = 10
NACK_MAX = 64  # sequence numbers per repeated NACK (the oldest first)


def video_frame(packets: list, timestamp: int) -> EncodedFrame:
    """A VP8 frame from its packets; a keyframe only if its first packet starts the frame."""
    first = packets[0]
    key = rtp.vp8_descriptor_starts_frame(first.payload) and rtp.vp8_is_keyframe(first._data)
    return EncodedFrame(packets, timestamp, key)


def _starts_keyframe(packet: Any) -> bool:
    return rtp.vp8_descriptor_starts_frame(packet.payload) and rtp.vp8_is_keyframe(packet._data)


class VideoJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but frames keep their packets, a frame is released on its marker
    packet, and a hole that NACK did not fill is skipped after a wait that follows the round
    trip to the publisher (`set_rtt`).

    A stall is a packet of a *later* frame arriving while no frame can be released. While it
    lasts, the missing packets are asked for again (`on_nack`) each time a retransmission is
    overdue; a complete keyframe behind the hole ends it (everything before the keyframe is
    dropped, no keyframe request is needed). Once it has lasted `max_wait`, everything before
    the newest packet is dropped and `pli_flag` is raised: the receiver then reports upstream
    loss, subscribers wait for a keyframe and one is asked for. The partial frame left behind is
    never a decodable keyframe, so gating discards it. A stall that starts with a hole of
    `BURST_PACKETS` or more calls `on_keyframe_wanted` at once (the keyframe is then already on
    its way if the NACKs cannot fill the hole).
    """

    def __init__(self, capacity: int = VIDEO_JITTER_CAPACITY, max_wait: float = MIN_HOLE_WAIT):
        super().__init__(capacity=capacity, is_video=True)
        self._max_wait = max_wait
        self._renack_after: float | None = None  # no round trip known: aiortc's one NACK only
        self._stalled_since: float | None = None
        self._next_nack = 0.0
        self._highest: int | None = None
        self.on_nack: Callable[[int, list[int]], None] | None = None  # (media SSRC, seqs)
        self.on_keyframe_wanted: Callable[[], None] | None = None
        self.holes_skipped = 0
        self.holes_skipped_to_keyframe = 0
        self.nacks_repeated = 0
        self.bursts = 0
        self.errors = 0

    @property
    def max_wait(self) -> float:
        return self._max_wait

    def set_rtt(self, timeout: float | None) -> None:
        """The publisher's retransmission timeout (`media.rtt.RttEstimator.timeout`): repeat
        NACKs after it, give up after two of it (bounded)."""
        if timeout is None:
            self._renack_after, self._max_wait = None, MIN_HOLE_WAIT
            return
        self._renack_after = timeout
        self._max_wait = min(MAX_HOLE_WAIT, max(MIN_HOLE_WAIT, 2 * timeout + HOLE_WAIT_MARGIN))

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
        key = self._keyframe_behind_hole(offset) if late or packet.marker else None
        if key is not None:  # a complete keyframe behind the hole: nothing before it matters
            self._stalled_since = None
            self.holes_skipped_to_keyframe += 1
            self.remove(key)
            return False, self._release_complete(packet.timestamp)
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
            self._next_nack = now + (self._renack_after or math.inf)
            if self.on_keyframe_wanted is not None and self._burst(offset):
                self.bursts += 1
                self.on_keyframe_wanted()
            return False, None
        if now - self._stalled_since < self._max_wait:
            if now >= self._next_nack:
                self._next_nack = now + (self._renack_after or math.inf)
                self._nack_missing(packet.ssrc, offset)
            return False, None
        self._stalled_since = None
        self.holes_skipped += 1
        self.remove(offset)
        return True, self._remove_frame(seq)

    def _keyframe_behind_hole(self, offset: int) -> int | None:
        """If the packet at `offset` belongs to a complete keyframe that is not the head frame,
        the offset of that keyframe's first packet (a frame is complete when its packets are
        contiguous from one that starts it to one with the marker bit)."""
        packets, capacity, origin = self._packets, self._capacity, self._origin
        timestamp = packets[(origin + offset) % capacity].timestamp
        first = offset
        while first > 0:
            before = packets[(origin + first - 1) % capacity]
            if before is None or before.timestamp != timestamp:
                break
            first -= 1
        if first == 0 or not _starts_keyframe(packets[(origin + first) % capacity]):
            return None  # first == 0: the head frame, which the marker rule releases
        last = offset
        while not packets[(origin + last) % capacity].marker:
            last += 1
            if last >= capacity:
                return None
            after = packets[(origin + last) % capacity]
            if after is None or after.timestamp != timestamp:
                return None
        return first

    def _burst(self, offset: int) -> bool:
        """Are BURST_PACKETS or more missing before `offset`? (stops counting there)"""
        packets, capacity, origin = self._packets, self._capacity, self._origin
        missing = 0
        for i in range(offset):
            if packets[(origin + i) % capacity] is None:
                missing += 1
                if missing >= BURST_PACKETS:
                    return True
        return False

    def _nack_missing(self, ssrc: int, offset: int) -> None:
        """Ask again for the packets still missing before `offset`."""
        if self.on_nack is None:
            return
        origin, capacity, packets = self._origin, self._capacity, self._packets
        lost = list(
            islice(
                (
                    uint16_add(origin, i)
                    for i in range(offset)
                    if packets[(origin + i) % capacity] is None
                ),
                NACK_MAX,
            )
        )
        if lost:
            self.nacks_repeated += 1
            self.on_nack(ssrc, lost)

    def _remove_frame(self, sequence_number: int) -> EncodedFrame | None:
        """aiortc's rule (a frame is complete when a packet of the next one follows it, no
        prefetch), returning the frame's packets instead of their joined bytes."""
        packets: list = []
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if packets and packet.timestamp != packets[0].timestamp:
                self.remove(count)
                return video_frame(packets, packets[0].timestamp)
            packets.append(packet)
        return None

    def _release_complete(self, timestamp: int) -> EncodedFrame | None:
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
                return video_frame(packets, timestamp)
        return None


class AudioPassBuffer:
    """Stands in for the audio jitter buffer: each Opus packet is a frame, forwarded at once.

    aiortc's audio buffer holds 4 packets (80 ms) for its decoder; the subscriber's own jitter
    buffer does that job, so the SFU only drops duplicates and packets older than the last one.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet) -> tuple[bool, EncodedFrame | None]:
        seq = packet.sequence_number
        if self._last is not None and not uint16_gt(seq, self._last):
            return False, None
        self._last = seq
        return False, EncodedFrame([packet], packet.timestamp, True)


FrameCallback = Callable[[EncodedFrame], None]


class FrameTap:
    """Stands in for a receiver's decoder queue: complete frames go to `on_frame`, not a thread.

    aiortc still starts its decoder thread on `receive()`; with this tap the thread only blocks in
    `get()` until the receiver stops, then ends (no decoding ever happens in it).
    """

    def __init__(self, on_frame: FrameCallback) -> None:
        self._on_frame = on_frame
        self._stopped = threading.Event()
        self.errors = 0
        self.buffer: VideoJitterBuffer | AudioPassBuffer | None = None  # set by tap_receiver

    def put(self, task: Any) -> None:
        if task is None:
            self._stopped.set()
            return
        try:
            self._on_frame(task[1])
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
    tap = FrameTap(on_frame)
    receiver._RTCRtpReceiver__decoder_queue = tap
    if kind == "video":
        tap.buffer = VideoJitterBuffer()
        tap.buffer.on_nack = _nack_sender(receiver)
    else:
        tap.buffer = AudioPassBuffer()
    receiver._RTCRtpReceiver__jitter_buffer = tap.buffer
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator
    if estimator is not None:  # video: the REMB Parley sends the publisher
        estimator.incoming_bitrate = WindowRate(1000, 8000)
    return tap


def _nack_sender(receiver: rtcrtpreceiver.RTCRtpReceiver) -> Callable[[int, list[int]], None]:
    """`VideoJitterBuffer.on_nack` for `receiver`: a generic NACK upstream through aiortc's
    own `_send_rtcp_nack` (its NACK generator sends one only when it first sees a gap)."""
    pending: set[asyncio.Task] = set()

    async def send(media_ssrc: int, lost: list[int]) -> None:
        try:
            await receiver._send_rtcp_nack(media_ssrc, lost)
        except Exception as exc:  # the transport is closing: the request simply gets lost
            log.debug("NACK not sent: %r", exc)

    def nack(media_ssrc: int, lost: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(send(media_ssrc, lost))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return nack


class _NoDecoder:
    """The decoder queue of a receiver that never starts: a frame put in is dropped (a stray
    packet must not pile up), and a decoder thread, were one ever started, ends at once."""

    def put(self, item: Any) -> None:
        return None

    def get(self) -> None:
        return None


# What senders and receivers that never start share instead of their own: aiortc gives each
# sender four asyncio Events and each receiver two, a decoder error flag and a queue.Queue (an
# Event is ~0.7 KB with its waiter deque, the queue ~3 KB with its three Conditions): ~150 KB a
# participant over 16 transceivers, none of it ever waited on, set or filled, since only a
# started sender or receiver (aiortc's `send()` / `receive()`) touches them.
_UNSTARTED = asyncio.Event()
_NO_DECODER_ERROR = threading.Event()
_NO_DECODER = _NoDecoder()


def unused_receiver(receiver: rtcrtpreceiver.RTCRtpReceiver) -> None:
    """Drop what a receiver that never receives holds: a slot transceiver is sendonly, yet
    aiortc builds a full receiver for it, and a video one carries a REMB estimator whose rate
    counter alone is 1000 bucket objects (~66 KB; 7 slots: ~0.45 MB per participant). The
    receiver is never started, so nothing reads it; its 512-packet jitter buffer goes too, and
    its Events, error flag and decoder queue give way to shared ones (`_UNSTARTED`)."""
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("unused_receiver() is for a receiver that never starts")
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None
    receiver._RTCRtpReceiver__jitter_buffer = AudioPassBuffer()
    receiver._RTCRtpReceiver__decoder_queue = _NO_DECODER
    receiver._RTCRtpReceiver__decoder_error = _NO_DECODER_ERROR
    receiver._RTCRtpReceiver__rtcp_started = _UNSTARTED
    receiver._RTCRtpReceiver__rtcp_exited = _UNSTARTED


def receive_directly(dtls: Any) -> DirectReceive:
    """Handle `dtls`'s SRTP and SRTCP in the datagram callback instead of through aioice's queue.

    aiortc hands every datagram from the socket callback to a queue, and a task per transport
    takes it out again: a task switch per packet. Once DTLS is up, RTP and RTCP need none of
    that: they are decrypted and handled in the callback itself (DTLS records, and everything
    before the handshake, still take the queue). Must run before the connection starts.
    """
    direct = DirectReceive(dtls)
    connection = dtls.transport._connection
    direct.queued = connection.data_received
    connection.data_received = direct.data_received
    for protocol in connection._protocols:
        _skip_stun_parsing(protocol)
    return direct


def _skip_stun_parsing(protocol: Any) -> None:
    """aioice tries to parse every datagram as STUN and learns from the ValueError that it is
    not; RTP and RTCP (first byte 128-191, RFC 7983) go to the connection without that detour."""
    parse_as_stun = protocol.datagram_received
    connection = protocol.receiver

    def datagram_received(data: bytes, addr: Any) -> None:
        if rtp.is_rtp_or_rtcp(data):
            connection.data_received(data, protocol.local_candidate.component)
        else:
            parse_as_stun(data, addr)

    protocol.datagram_received = datagram_received


class DirectReceive:
    """The datagram path of one transport (see `receive_directly`)."""

    def __init__(self, dtls: Any) -> None:
        self.dtls = dtls
        self.queued: Callable[[bytes, int], None] = lambda data, component: None
        self.packets = 0
        self.suspended = 0  # handlers that awaited for real (finished later from a callback)
        self.errors = 0

    def data_received(self, data: bytes, component: int) -> None:
        if not data:
            return  # aiortc's receive loop would end on an empty datagram (data[0])
        dtls = self.dtls
        srtp = dtls._rx_srtp
        if srtp is None or not rtp.is_rtp_or_rtcp(data) or dtls._state != DTLS_CONNECTED:
            self.queued(data, component)
            return
        self.packets += 1
        try:
            if is_rtcp(data):
                self._drive(dtls._handle_rtcp_data(srtp.unprotect_rtcp(data)))
            else:
                arrival_ms = int((time.time() + rtp.NTP_OFFSET) * 1000)
                self._drive(dtls._handle_rtp_data(srtp.unprotect(data), arrival_ms))
        except pylibsrtp.Error:
            pass  # replayed or forged: dropped, as aiortc does

    def _drive(self, coro: Any) -> None:
        """Run a handler coroutine to its end now. They never wait in practice (their sends are
        synchronous underneath); if one does, it is resumed when what it awaits is done."""
        try:
            awaited = coro.send(None)
        except StopIteration:
            return
        except Exception:
            self.errors += 1
            if self.errors == 1:
                log.exception("handling a received packet failed")
            return
        self.suspended += 1
        if awaited is None:  # a bare yield (asyncio.sleep(0))
            asyncio.get_running_loop().call_soon(self._drive, coro)
        else:
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(lambda _: self._drive(coro))


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


# ---------------------------------------------------------------------------------------------
# Send side

# Retransmission history (video only). A NACK helps only while the subscriber still waits for
# the packet: its NACK for a loss arrives about one round trip after the packet was sent, a
# repeated one a round trip or two later; a packet seconds old would only reach a receiver that
# has long since skipped the hole or asked for a keyframe. What sets the window is a loss burst:
# after a 1 s blackout (the lossy-link test's burst lasts 1.06-1.53 s here) the subscriber NACKs
# every packet of it at once, the oldest then ~burst + one way old; with a 1 s window the first
# ones go unanswered (one run of tests/e2e/test_lossy_link.py: the party's video back 2.5 s after
# the burst, against 0.29 s with 2 s and 0.1-0.7 s with the old 512-packet ring). So a packet
# stays retransmittable for max(2 s, 3 x RTT): a 1.5 s burst plus a 200 ms RTT's NACK and a
# repeat. (libwebrtc's own sender keeps a packet at least max(1 s, 3 x RTT) and at most 3 times
# that.) RTX_HISTORY caps the packets held whatever the bitrate (512: 2 s of ~2.5 Mbit/s
# video). Audio keeps none: Opus is never negotiated with NACK (aiortc's audio codecs carry no
# rtcp-fb, browsers offer only transport-cc for it), so no audio NACK comes to answer.
RTX_WINDOW = 2.0  # seconds a sent video packet stays retransmittable, at least
RTX_WINDOW_RTTS = 3  # ... or this many round trips when that is longer
RTX_HISTORY = 512  # packets at most
_REPORTS = (RtcpRrPacket, RtcpSrPacket)  # RTCP packets that carry report blocks
SR_REMEMBERED = 4  # sender reports kept for round-trip timing (a receiver reports every ~1 s)


class RtpRelay:
    """Writes one slot sender's RTP and RTCP: publisher payloads under this sender's own header,
    and its sender reports.

    Configured from the parameters aiortc passes to `sender.send()` (payload types, mid, header
    extension ids, CNAME); until then, and whenever DTLS or ICE is not up, `send` refuses frames
    (the slot holds them). Sequence numbers are the relay's own, so what a subscriber sees is
    gap-free whatever the gating dropped.

    aiortc's own sender is never started: no `_run_rtp` task, no `_run_rtcp` task, no sender
    reports from it. An idle slot (no source attached) therefore costs nothing while the call
    runs: no task, no timer, no RTCP, and no SRTP stream (libsrtp creates one per SSRC on the
    first packet protected). While a source is attached (`set_active(True)`) the relay sends a
    sender report + SDES every 0.5-1.5 s from one timer handle on the RTCP grid, once it has sent
    media; detached, the timer stops. The sender is registered with the transport's RTCP router
    on its first activation (PLI, FIR, NACK, REMB and receiver reports reach it from then on).
    """

    def __init__(self, sender: rtcrtpsender.RTCRtpSender, *, active: bool = True) -> None:
        self.sender = sender
        self.ready = False
        self._seq = 0
        self._rtx_seq = 0
        self._pt = 0
        self._rtx_pt: int | None = None
        self._ext = rtp.ExtensionWriter(0, b"", 0, 0)
        self._out: tuple[Any, Any, tuple] | None = None  # (SRTP session, UDP transport, address)
        # video packets sent within the retransmission window, for NACKs, oldest first, as
        # (sent at (monotonic), seq, timestamp, marker, payload); allocated with the first frame
        # (an idle slot holds none), never for audio (`configure`)
        self._history: deque[tuple[float, int, int, bool, bytes]] | None = None
        self._keeps_history = True  # False for audio (no NACK is negotiated for it)
        self._rtt = 0.0  # the last round-trip sample (sender report echoed), seconds
        self.packets = 0
        self.octets = 0
        self.retransmitted = 0
        self.reports = 0  # sender reports sent
        # reports run while active: a slot's relay starts idle and follows its source
        # (SlotTrack.set_source); other senders (the bench's publishers) are always active
        self.active = active
        self._parameters: Any = None
        self._cname = b""
        self._registered = False
        self._report_timer: asyncio.TimerHandle | None = None
        self._ntp = 0  # NTP and RTP time of the last packet sent, for the sender report
        self._rtp_ts = 0
        # the last few sender reports: their LSR (middle 32 bits of the NTP time they carry) to
        # when they were sent (monotonic), to time the round trip when a receiver report
        # echoes one (RFC 3550 6.4.1; the NTP time is the last packet's, not the report's)
        self._sr_sent: dict[int, float] = {}
        self.on_rtt: Callable[[float], None] | None = None  # each round-trip sample, seconds

    def configure(self, parameters: Any) -> None:
        """Take the negotiated payload types and extension ids (from `sender.send()`)."""
        codec = parameters.codecs[0]
        self._pt = codec.payloadType
        self._keeps_history = not codec.mimeType.lower().startswith("audio/")
        for c in parameters.codecs:
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == self._pt:
                self._rtx_pt = c.payloadType
        mid = (parameters.muxId or "").encode()
        uris = {ext.uri: ext.id for ext in parameters.headerExtensions}
        self._ext = rtp.ExtensionWriter(
            uris.get(rtp.MID_URI, 0) if mid else 0,
            mid,
            uris.get(rtp.ABS_SEND_TIME_URI, 0),
            uris.get(rtp.AUDIO_LEVEL_URI, 0),
        )
        self._seq = random.getrandbits(16)
        self._rtx_seq = random.getrandbits(16)
        self._parameters = parameters
        cname = parameters.rtcp.cname if parameters.rtcp is not None else None
        self._cname = (cname or "").encode()
        self.ready = True
        if self.active:
            self._start_reports()

    def set_active(self, active: bool) -> None:
        """A source was attached (True) or detached (False): start or stop this slot's RTCP.

        Detached, the slot also lets go of its retransmission history: the old source's last
        two seconds of video payloads (up to RTX_HISTORY) that would otherwise stay alive as
        long as the slot stays idle. A NACK for them is not answered any more; the next source
        starts on a keyframe of its own.
        """
        if active == self.active:
            return
        self.active = active
        if not active:
            self._stop_reports()
            self._history = None
        elif self.ready:
            self._start_reports()

    def close(self) -> None:
        self.active = False
        self._stop_reports()
        self._history = None

    def _start_reports(self) -> None:
        if not self._registered:
            self._registered = True
            self.sender.transport._register_rtp_sender(self.sender, self._parameters)
        if self._report_timer is None:
            self._schedule_report()

    def _stop_reports(self) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None

    def _schedule_report(self) -> None:
        """Next report in 0.5-1.5 s (aiortc's interval), on the RTCP grid (wakes together)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # configured outside a loop (a synchronous test): no reports
            return
        due = loop.time() + RTCP_INTERVAL * (0.5 + random.random())
        self._report_timer = loop.call_at(math.ceil(due / RTCP_GRID) * RTCP_GRID, self._report)

    def _report(self) -> None:
        self._report_timer = None
        if not self.active:
            return
        dtls = self.sender.transport
        if dtls is None or dtls._state in DTLS_ENDED:  # the connection is gone: so are reports
            self.active = False
            return
        out = self._output() if self.packets else None  # a sender report needs sent media
        if out is not None:
            srtp, udp, addr = out
            ssrc = self.sender._ssrc
            data = bytes(
                RtcpSrPacket(
                    ssrc=ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=self._ntp,
                        rtp_timestamp=self._rtp_ts,
                        packet_count=self.packets & 0xFFFFFFFF,
                        octet_count=self.octets & 0xFFFFFFFF,
                    ),
                )
            )
            if self._cname:
                sdes = RtcpSourceInfo(ssrc=ssrc, items=[(1, self._cname)])
                data += bytes(RtcpSdesPacket(chunks=[sdes]))
            try:
                udp.sendto(srtp.protect_rtcp(data), addr)
                self.reports += 1
                sent = self._sr_sent
                sent[(self._ntp >> 16) & 0xFFFFFFFF] = time.monotonic()
                if len(sent) > SR_REMEMBERED:
                    del sent[next(iter(sent))]
            except Exception:  # a closing transport: the next report (if any) tries again
                log.debug("sending a sender report failed", exc_info=True)
        self._schedule_report()

    def _output(self) -> tuple[Any, Any, tuple] | None:
        """(SRTP session, UDP transport, address) while DTLS is up, else None.

        Looked up once DTLS is connected and kept: aiortc never changes the nominated pair of
        a running connection, and once DTLS leaves "connected" nothing is sent again.
        """
        dtls = self.sender.transport
        if dtls is None or dtls._state != DTLS_CONNECTED:
            self._out = None
            return None
        if self._out is None:
            pair = dtls.transport._connection._nominated.get(1)
            if pair is None or pair.protocol.transport is None:
                return None
            self._out = (dtls._tx_srtp, pair.protocol.transport, pair.remote_addr)
        return self._out

    def feedback(self, packet: Any) -> None:
        """A receiver report block about this sender that echoes one of its sender reports is
        a round-trip sample: now - sent - DLSR (it also sizes the retransmission window)."""
        if not isinstance(packet, _REPORTS):
            return
        ssrc = self.sender._ssrc
        for report in packet.reports:
            if report.ssrc == ssrc and report.lsr:
                sent = self._sr_sent.get(report.lsr)
                if sent is not None:
                    rtt = time.monotonic() - sent - report.dlsr / 65536
                    self._rtt = max(rtt, 0.0)
                    if self.on_rtt is not None:
                        self.on_rtt(rtt)

    @property
    def rtx_window(self) -> float:
        """Seconds a sent video packet stays retransmittable: max(RTX_WINDOW, 3 x RTT)."""
        return max(RTX_WINDOW, RTX_WINDOW_RTTS * self._rtt)

    @property
    def can_send(self) -> bool:
        """True once configured and connected (DTLS up, a nominated ICE pair)."""
        return self.ready and self._output() is not None

    def send(self, frame: EncodedFrame, timestamp: int) -> bool:
        """Send `frame` now with RTP timestamp `timestamp`; False (nothing sent) while the
        connection is not up."""
        out = self._output() if self.ready else None
        if out is None:
            return False
        srtp, udp, addr = out
        ntp = rtp.ntp_time()  # one clock read: abs-send-time and the sender-report clock
        ext = self._ext.block(rtp.abs_send_time(ntp), frame.audio_level)
        pt, ssrc, seq, history = self._pt, self.sender._ssrc, self._seq, self._history
        now = time.monotonic()
        if history is None:
            if self._keeps_history:
                history = self._history = deque(maxlen=RTX_HISTORY)
        else:
            cutoff = now - self.rtx_window
            while history and history[0][0] < cutoff:
                history.popleft()
        timestamp &= 0xFFFFFFFF
        sent = octets = 0
        for packet in frame.packets:
            payload = packet.payload
            if not payload:
                continue  # padding only: the subscriber's bandwidth probing is not ours to relay
            marker = bool(packet.marker)
            data = rtp.rtp_packet(pt, marker, seq, timestamp, ssrc, ext, payload)
            udp.sendto(srtp.protect(data), addr)
            if history is not None:
                history.append((now, seq, timestamp, marker, payload))
            seq = (seq + 1) & 0xFFFF
            sent += 1
            octets += len(payload)
        self._seq = seq
        self.packets += sent
        self.octets += octets
        self._ntp, self._rtp_ts = ntp, timestamp
        return True

    async def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK: the packet again, as RTX when negotiated (RFC 4588), from history,
        if it was sent within the retransmission window."""
        history = self._history
        if not history:
            return
        # the history's sequence numbers are consecutive (every packet sent is appended)
        index = (sequence_number - history[0][1]) & 0xFFFF
        if index >= len(history):
            return
        sent_at, seq, timestamp, marker, payload = history[index]
        out = self._output()
        if seq != sequence_number or out is None:
            return
        if time.monotonic() - sent_at > self.rtx_window:
            return
        srtp, udp, addr = out
        ext = self._ext.block(rtp.abs_send_time(rtp.ntp_time()))
        if self._rtx_pt is None:
            data = rtp.rtp_packet(self._pt, marker, seq, timestamp, self.sender._ssrc, ext, payload)
        else:
            data = rtp.rtp_packet(
                self._rtx_pt,
                marker,
                self._rtx_seq,
                timestamp,
                self.sender._rtx_ssrc,
                ext,
                seq.to_bytes(2, "big") + payload,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        udp.sendto(srtp.protect(data), addr)
        self.retransmitted += 1


RtcpCallback = Callable[[Any], None]


def hook_sender(
    sender: rtcrtpsender.RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_feedback: RtcpCallback | None = None,
    *,
    active: bool = True,
) -> RtpRelay:
    """Take over `sender`'s RTP and RTCP output; relay its subscriber's PLI/FIR upstream and show
    its REMB / reports to `on_feedback`. Must run before the connection starts.

    aiortc's `send()` (which would start an RTP task idling on the slot track and an RTCP task
    per sender, idle slots included) only configures the relay; the relay sends the reports while
    a source is attached (`active=False`: a slot, which starts idle; `active=True`: from the start,
    for a sender that always sends). aiortc's `_send_keyframe` would only set a flag for an encoder that
    does not run, and its NACK answers would look in a history the relay does not fill; both are
    replaced on this instance only.
    """
    relay = RtpRelay(sender, active=active)

    async def configure(parameters: Any) -> None:
        relay.configure(parameters)

    sender.send = configure
    # aiortc's sender never starts now: its RTP/RTCP task Events give way to a shared one
    for name in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
        setattr(sender, f"_RTCRtpSender__{name}", _UNSTARTED)
    sender._retransmit = relay.retransmit
    sender._send_keyframe = on_keyframe_request
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        relay.feedback(packet)
        if on_feedback is not None:
            on_feedback(packet)
        await original(packet)

    sender._handle_rtcp_packet = handle
    return relay
