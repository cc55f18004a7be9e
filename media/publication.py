"""A publication: one incoming track of a participant, kept encoded.

It taps the aiortc receiver (media/passthrough.py) so complete encoded frames go to its
`Forwarder`, and turns keyframe requests into PLIs addressed to the publisher's *media* SSRC
(never the RTX SSRC, which browsers ignore).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media import passthrough
from media.forwarder import Forwarder

log = logging.getLogger(__name__)


class Publication:
    """Owned by a PeerSession; owns its Forwarder (and through it the subscriptions)."""

    def __init__(self, publisher_id: str, kind: str, receiver: RTCRtpReceiver) -> None:
        self.publisher_id = publisher_id
        self.kind = kind
        self.receiver = receiver
        self.forwarder = Forwarder(publisher_id, kind, self._request_keyframe)
        self._tap = passthrough.tap_receiver(receiver, kind, self.forwarder.deliver)
        buffer = self._tap.buffer
        self.jitter_buffer = buffer if isinstance(buffer, passthrough.VideoJitterBuffer) else None
        if self.jitter_buffer is not None:
            # a loss burst: a keyframe is asked for at once, in parallel with the NACKs
            self.jitter_buffer.on_keyframe_wanted = self.forwarder.request_keyframe
        passthrough.on_upstream_loss(receiver, self._on_loss)
        self._pending: set[asyncio.Task] = set()
        self.closed = False
        self.close_reason: str | None = None
        self.upstream_losses = 0
        self.plis_without_ssrc = 0
        # (when, bytes_in) for the bitrate: the first reading averages since the start
        self._sample: tuple[float, int] = (time.monotonic(), 0)
        self._bitrate: float | None = None

    @property
    def active(self) -> bool:
        """True once media has arrived from the publisher."""
        return self.forwarder.frames_in > 0

    def link(self) -> dict:
        """The uplink as the server sees it, for an officer's or host's console: bitrate over
        the time since the previous call (at least 1 s apart, else the previous figure), age of
        the last frame, holes given up on and NACKs repeated. Read on demand, never per packet."""
        f = self.forwarder
        now = time.monotonic()
        if now - self._sample[0] >= 1.0 or self._bitrate is None:
            if now > self._sample[0]:
                self._bitrate = (f.bytes_in - self._sample[1]) * 8 / (now - self._sample[0])
            if now - self._sample[0] >= 1.0:
                self._sample = (now, f.bytes_in)
        jb = self.jitter_buffer
        return {
            "bitrate": None if self._bitrate is None else round(self._bitrate),
            "age": None if f.last_in is None else round(max(0.0, now - f.last_in), 3),
            "holes": self.upstream_losses,
            "nacks": jb.nacks_repeated if jb is not None else 0,
        }

    def set_rtt(self, timeout: float | None) -> None:
        """The round trip to the publisher changed: the video hole wait follows it."""
        if self.jitter_buffer is not None:
            self.jitter_buffer.set_rtt(timeout)

    async def _on_loss(self, media_ssrc: int) -> None:
        # Called by the receiver (on the loop) instead of its own PLI: route it through the
        # forwarder so that subscribers resync and the request is rate-limited.
        self.upstream_losses += 1
        self.forwarder.upstream_loss()

    def _request_keyframe(self) -> bool:
        """Send a PLI; False when nothing has been received yet (no SSRC to address)."""
        ssrcs = passthrough.media_ssrcs(self.receiver)
        if not ssrcs:
            self.plis_without_ssrc += 1  # the retry timer asks again
            return False
        task = asyncio.get_running_loop().create_task(self._send_pli(ssrcs[0]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _send_pli(self, media_ssrc: int) -> None:
        try:
            await passthrough.send_pli(self.receiver, media_ssrc)
        except Exception as exc:  # the transport is closing: the request simply gets lost
            log.debug("PLI to %s not sent: %r", self.publisher_id, exc)

    def close(self, reason: str) -> None:
        """Close the forwarder and every subscription; the receiver stops with the connection."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        self.forwarder.close(reason)
        self._tap.stop()
        for task in self._pending:
            task.cancel()

    def to_dict(self) -> dict:
        return {
            "publisher": self.publisher_id,
            "kind": self.kind,
            "subscribers": sorted(self.forwarder.subscriptions),
            "frames_in": self.forwarder.frames_in,
            "keyframes_in": self.forwarder.keyframes_in,
            **self._buffer_stats(),
        }

    def _buffer_stats(self) -> dict:
        jb = self.jitter_buffer
        if jb is None:
            return {}
        return {
            "hole_wait_s": round(jb.max_wait, 3),
            "holes_skipped": jb.holes_skipped,
            "holes_skipped_to_keyframe": jb.holes_skipped_to_keyframe,
            "nacks_repeated": jb.nacks_repeated,
            "loss_bursts": jb.bursts,
        }
