"""A slot: one pre-negotiated outgoing audio or video sender whose source is switched.

Each slot sender gets one `SlotTrack` at negotiation and keeps it for the connection's life; the
track carries whichever subscription is attached and hands its frames straight to the sender's
`RtpRelay`: a frame goes out in the same loop turn it arrived in. Only while the subscriber's
connection is still coming up are frames held (from the keyframe gating let through), so that a
subscriber that joins together with its subscription gets that first keyframe as soon as it is
connected instead of waiting for the next one. Replacing the track on a running aiortc sender
leaves its `recv()` pending forever (docs/decisions.md, decision 7), so the source is switched
instead.
Timestamps are rebased per source so that the slot's RTP clock keeps moving forward across
switches. An idle slot (no source) costs nothing while the call runs: the output is told when
a source is attached or detached (`set_active`) and runs the slot's RTCP only in between;
aiortc's own sender tasks are never started (`media.passthrough.RtpRelay`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

if TYPE_CHECKING:
    from media.forwarder import Subscription
    from media.rtp import EncodedFrame

CLOCK_RATE = {"audio": 48000, "video": 90000}
# Frames held while the sender is not connected: ~1 s of video at 30 fps, ~0.6 s of audio. Past
# that the subscriber resyncs on a keyframe rather than receive a burst of stale media.
HOLD_LIMIT = 30


class FrameOutput(Protocol):
    """Where a slot's frames go: `media.passthrough.RtpRelay` (or a test double)."""

    def send(self, frame: EncodedFrame, timestamp: int) -> bool:
        """Send now; False (and nothing sent) while the connection is not up."""

    # Optional: `set_active(active: bool)`, called when a source is attached (True) or detached.


class SlotTrack(MediaStreamTrack):
    """The permanent track of one slot sender; relays frames of the attached source."""

    def __init__(self, kind: str, output: FrameOutput | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.output = output
        self._rate = CLOCK_RATE[kind]
        self._source: Subscription | None = None
        self._offset: int | None = None  # added to source timestamps; None: recompute next frame
        self._last_ts = 0
        self._last_wall: float | None = None
        self._stopped = asyncio.Event()
        self._held: collections.deque[tuple[EncodedFrame, int]] = collections.deque()
        self.frames_sent = 0
        self.frames_dropped = 0  # held frames given up on (the sender stayed unconnected)

    @property
    def source(self) -> Subscription | None:
        return self._source

    def set_source(self, source: Subscription | None) -> None:
        """Switch what this slot carries; the next frame starts a new timestamp offset."""
        if source is self._source:
            return
        self._source = source
        self._offset = None
        self._held.clear()
        self._tell_output(source is not None and self.readyState == "live")

    def _tell_output(self, active: bool) -> None:
        set_active = getattr(self.output, "set_active", None)
        if set_active is not None:
            set_active(active)

    def push(self, frame: EncodedFrame, source: Subscription) -> bool:
        """Send one frame of `source` (or hold it while the sender is not connected); False
        when held frames overflowed and were dropped, so the subscription resyncs."""
        if source is not self._source or self.readyState != "live" or self.output is None:
            return True
        now = time.monotonic()
        if self._offset is None:
            self._offset = self._continue_from(now) - frame.timestamp
        timestamp = (frame.timestamp + self._offset) & 0xFFFFFFFF
        if (not self._held or self._flush()) and self.output.send(frame, timestamp):
            self._sent(timestamp, now)
            return True
        if len(self._held) >= HOLD_LIMIT:
            self.frames_dropped += len(self._held)
            self._held.clear()
            return False
        self._held.append((frame, timestamp))
        return True

    def _flush(self) -> bool:
        """Send held frames in order; False if the sender still cannot take them."""
        while self._held:
            frame, timestamp = self._held[0]
            if not self.output.send(frame, timestamp):
                return False
            self._held.popleft()
            self._sent(timestamp, time.monotonic())
        return True

    def _sent(self, timestamp: int, now: float) -> None:
        self._last_ts, self._last_wall = timestamp, now
        self.frames_sent += 1

    def _continue_from(self, now: float) -> int:
        """The timestamp a new source's first frame gets: the slot's clock advanced by wall time."""
        if self._last_wall is None:
            return 0
        return self._last_ts + max(1, int((now - self._last_wall) * self._rate))

    async def recv(self):  # type: ignore[override]
        """Nothing is ever read here (the relay sends); aiortc's sender tasks are not started."""
        if self.readyState == "live":
            await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._source = None
        self._held.clear()
        self._stopped.set()
        self._tell_output(False)
