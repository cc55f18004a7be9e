"""Follow the weakest subscriber: bitrate caps for publishers, audio-only for lossy subscribers.

aiortc has no simulcast and no transport-cc, and in the pack path a subscriber's REMB reaches
an encoder that does not run. So the server reads each subscriber's feedback on its slot
senders — REMB (the subscriber's whole downlink estimate) and receiver-report loss — and emits
hints that signaling relays to browsers: `{"max_bitrate": bps}` to a publisher (applied with
`RTCRtpSender.setParameters`) and `{"audio_only": True, "reason": "loss"}` to a subscriber whose
video loss stays high.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

if TYPE_CHECKING:
    from media.peer import PeerSession, Slot

MIN_BITRATE = 150_000  # below this a hint would only ruin the picture for everyone
MAX_BITRATE = 2_500_000
CHANGE_RATIO = 0.15  # hint again only when the cap moves by more than this
ESTIMATE_TTL = 5.0  # seconds an estimate counts for
LOSS_HIGH = 0.10  # fraction lost (smoothed) that makes video pointless for a subscriber
LOSS_CLEAR = 0.03
LOSS_REPORTS = 3  # consecutive lossy reports before the audio-only hint
LOSS_ALPHA = 0.5


class BandwidthMonitor:
    """Collects per-subscription feedback; calls on_hint(participant_id, hint)."""

    def __init__(
        self,
        on_hint: Callable[[str, dict], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_hint = on_hint
        self._clock = clock
        # publisher -> subscriber -> (bps share for that publisher's video, when)
        self._estimates: dict[str, dict[str, tuple[int, float]]] = {}
        self._hinted_cap: dict[str, int] = {}
        self._loss: dict[str, float] = {}
        self._lossy_reports: dict[str, int] = {}
        self._audio_only_hinted: set[str] = set()
        self.counters = {"remb_reports": 0, "loss_reports": 0, "hints_sent": 0}

    def feedback(self, peer: PeerSession, slot: Slot, kind: str, packet: object) -> None:
        """RTCP a subscriber sent about one slot sender (called by PeerSession)."""
        source = slot.tracks[kind].source
        if source is None:
            return
        sender_ssrc = slot.senders[kind]._ssrc
        subscriber = peer.participant_id
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender_ssrc not in ssrcs or kind != "video":
                return
            self.counters["remb_reports"] += 1
            videos = sum(1 for s in peer.slots if s.tracks["video"].source is not None) or 1
            self.remb(source.forwarder.publisher_id, subscriber, bitrate // videos)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)) and kind == "video":
            for report in packet.reports:
                if report.ssrc == sender_ssrc:
                    self.counters["loss_reports"] += 1
                    self.loss(subscriber, report.fraction_lost / 256)

    def remb(self, publisher: str, subscriber: str, bps: int) -> None:
        """A subscriber's estimate of what it can take of this publisher's video."""
        now = self._clock()
        per_pub = self._estimates.setdefault(publisher, {})
        per_pub[subscriber] = (bps, now)
        fresh = [b for b, t in per_pub.values() if now - t <= ESTIMATE_TTL]
        cap = max(MIN_BITRATE, min(MAX_BITRATE, min(fresh)))
        last = self._hinted_cap.get(publisher)
        if last is None or abs(cap - last) > CHANGE_RATIO * last:
            self._hinted_cap[publisher] = cap
            self._hint(publisher, {"max_bitrate": cap})

    def loss(self, subscriber: str, fraction: float) -> None:
        """One receiver report's loss fraction for a subscriber's video."""
        smoothed = LOSS_ALPHA * fraction + (1 - LOSS_ALPHA) * self._loss.get(subscriber, fraction)
        self._loss[subscriber] = smoothed
        if smoothed >= LOSS_HIGH:
            n = self._lossy_reports[subscriber] = self._lossy_reports.get(subscriber, 0) + 1
            if n >= LOSS_REPORTS and subscriber not in self._audio_only_hinted:
                self._audio_only_hinted.add(subscriber)
                self._hint(subscriber, {"audio_only": True, "reason": "loss"})
        else:
            self._lossy_reports[subscriber] = 0
            if smoothed <= LOSS_CLEAR:
                self._audio_only_hinted.discard(subscriber)

    def loss_of(self, subscriber: str) -> float | None:
        return self._loss.get(subscriber)

    def forget(self, participant_id: str) -> None:
        """A participant left: drop its estimates, as publisher and as subscriber."""
        self._estimates.pop(participant_id, None)
        self._hinted_cap.pop(participant_id, None)
        for per_pub in self._estimates.values():
            per_pub.pop(participant_id, None)
        self._loss.pop(participant_id, None)
        self._lossy_reports.pop(participant_id, None)
        self._audio_only_hinted.discard(participant_id)

    def _hint(self, participant_id: str, hint: dict) -> None:
        self.counters["hints_sent"] += 1
        if self._on_hint is not None:
            self._on_hint(participant_id, hint)
