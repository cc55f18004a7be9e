"""Follow the weakest subscriber: bitrate caps for publishers, audio-only for lossy subscribers.

aiortc has no simulcast and no transport-cc, and in the pack path a subscriber's REMB reaches
an encoder that does not run. So the server reads each subscriber's feedback on its slot
senders — REMB (the subscriber's whole downlink estimate) and receiver-report loss — and emits
hints that signaling relays to browsers: `{"max_bitrate": bps}` to a publisher (applied with
`RTCRtpSender.setParameters`) and `{"audio_only": True, "reason": "loss"}` to a subscriber whose
video loss stays high.

A publisher's cap follows the lowest fresh estimate of its subscribers: down at once (by more
than CHANGE_RATIO), up in a bounded ramp (at most UP_STEP per UP_INTERVAL) so that a link that
recovers, or a constrained subscriber that leaves or stops reporting, does not throw the
publisher from 150 kbit/s to 2.5 Mbit/s in one step. An estimate not renewed for ESTIMATE_TTL
no longer counts; with none left the cap ramps back to MAX_BITRATE. Expiry and the ramp's next
steps are driven by time, checked on every RTCP packet from any subscriber (`tick`), not only
by the REMB of the subscriber that set the cap, which may never come again.
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
UP_STEP = 1.3  # a cap rises at most this much per step ...
UP_INTERVAL = 1.0  # ... and one step per this many seconds (150 kbit/s → 2.5 Mbit/s in ~11 s)
ESTIMATE_TTL = 5.0  # seconds an estimate counts for
TICK_INTERVAL = 0.5  # seconds between two checks of expiry and ramp (`tick`)
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
        self._hinted_at: dict[str, float] = {}
        self._ramping: set[str] = set()  # publishers whose last up step was cut by UP_STEP
        self._next_tick = 0.0
        self._loss: dict[str, float] = {}
        self._lossy_reports: dict[str, int] = {}
        self._audio_only_hinted: set[str] = set()
        self.counters = {"remb_reports": 0, "loss_reports": 0, "hints_sent": 0}

    def feedback(self, peer: PeerSession, slot: Slot, kind: str, packet: object) -> None:
        """RTCP a subscriber sent about one slot sender (called by PeerSession)."""
        self.tick()
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
        self._estimates.setdefault(publisher, {})[subscriber] = (bps, now)
        self._update(publisher, now)

    def tick(self) -> None:
        """Expire stale estimates and take due ramp steps (at most every TICK_INTERVAL)."""
        now = self._clock()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_INTERVAL
        for publisher in list(self._hinted_cap):
            self._update(publisher, now)

    def cap_of(self, publisher: str) -> int | None:
        """The last cap hinted to this publisher."""
        return self._hinted_cap.get(publisher)

    def _target(self, publisher: str, now: float) -> int | None:
        """The lowest fresh estimate (clamped); MAX_BITRATE when none is fresh; None when this
        publisher never had one."""
        per_pub = self._estimates.get(publisher)
        if per_pub is None:
            return None
        for subscriber, (_, when) in list(per_pub.items()):
            if now - when > ESTIMATE_TTL:
                del per_pub[subscriber]
        if not per_pub:
            return MAX_BITRATE
        return max(MIN_BITRATE, min(MAX_BITRATE, min(b for b, _ in per_pub.values())))

    def _update(self, publisher: str, now: float) -> None:
        target = self._target(publisher, now)
        if target is None:
            return
        last = self._hinted_cap.get(publisher)
        if last is None or target < last * (1 - CHANGE_RATIO):
            cap = target  # first hint, or down: at once
        elif target > last * (1 + CHANGE_RATIO) or (publisher in self._ramping and target > last):
            if now - self._hinted_at.get(publisher, now - UP_INTERVAL) < UP_INTERVAL:
                return  # the next step when it is due (next REMB or tick)
            cap = min(target, int(last * UP_STEP))
        else:
            return
        if cap < target:
            self._ramping.add(publisher)
        else:
            self._ramping.discard(publisher)
        self._hinted_cap[publisher] = cap
        self._hinted_at[publisher] = now
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
        self._hinted_at.pop(participant_id, None)
        self._ramping.discard(participant_id)
        for per_pub in self._estimates.values():
            per_pub.pop(participant_id, None)
        self._loss.pop(participant_id, None)
        self._lossy_reports.pop(participant_id, None)
        self._audio_only_hinted.discard(participant_id)
        now = self._clock()
        for publisher in list(self._hinted_cap):  # the caps it held down start to rise
            self._update(publisher, now)

    def _hint(self, participant_id: str, hint: dict) -> None:
        self.counters["hints_sent"] += 1
        if self._on_hint is not None:
            self._on_hint(participant_id, hint)
