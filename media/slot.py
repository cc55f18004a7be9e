"""A slot: one pre-negotiated outgoing audio or video sender whose source is switched.

Each slot sender gets one `SlotTrack` at negotiation and keeps it for the connection's life.
aiortc's sender sits in `await track.recv()`; replacing the track on a running sender leaves
that call pending forever (notes/renegotiation.md), so instead the slot track's *source* is
switched and `recv()` simply waits for whichever source is attached. Timestamps are rebased per
source so that the slot's RTP clock keeps moving forward across switches.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from typing import TYPE_CHECKING

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

if TYPE_CHECKING:
    import av

    from media.forwarder import Subscription

# A sender that falls this far behind is stuck or on a hopeless link: drop and resync on a
# keyframe rather than grow memory (video: ~1 s at 30 fps; audio: ~0.6 s).
QUEUE_LIMIT = {"video": 30, "audio": 30}


class OutgoingFrame:
    """What a slot hands to aiortc's `encoder.pack()`: bytes plus a rebased timestamp.

    A light stand-in for `av.Packet` (the packers only read `bytes()`, `pts` and `time_base`), so
    one received packet can go to many slots with different timestamps without copying it.
    """

    __slots__ = ("data", "pts", "time_base", "is_keyframe", "queued_at")

    def __init__(self, data: bytes, pts: int, time_base: fractions.Fraction, key: bool) -> None:
        self.data, self.pts, self.time_base, self.is_keyframe = data, pts, time_base, key
        self.queued_at = time.monotonic()

    def __bytes__(self) -> bytes:
        return self.data


class SlotTrack(MediaStreamTrack):
    """The permanent track of one slot sender; yields frames of the attached source."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._limit = QUEUE_LIMIT[kind]
        self._frames: collections.deque[OutgoingFrame] = collections.deque()
        self._source: Subscription | None = None
        self._waiter: asyncio.Future | None = None
        self._offset: int | None = None  # added to source pts; None: recompute at next frame
        self._last_pts = 0
        self._last_wall: float | None = None
        self.frames_sent = 0
        self.delay_total = 0.0  # seconds frames waited in this slot before the sender took them
        self.delay_max = 0.0

    @property
    def source(self) -> Subscription | None:
        return self._source

    def set_source(self, source: Subscription | None) -> None:
        """Switch what this slot carries; frames of the previous source still queued are dropped."""
        if source is self._source:
            return
        self._source = source
        self._frames.clear()
        self._offset = None

    def push(self, packet: av.Packet, data: bytes, source: Subscription) -> bool:
        """Queue one frame from `source`; False when the queue overflowed (and was emptied).

        `data` is `bytes(packet)`, computed once by the forwarder for all its subscribers.
        """
        if source is not self._source or self.readyState != "live":
            return True
        if len(self._frames) >= self._limit:
            self._frames.clear()
            return False
        pts = packet.pts
        if self._offset is None:
            self._offset = self._continue_from(packet.time_base) - pts
        self._frames.append(
            OutgoingFrame(data, pts + self._offset, packet.time_base, packet.is_keyframe)
        )
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def clear(self) -> None:
        self._frames.clear()

    def _continue_from(self, time_base: fractions.Fraction) -> int:
        """The pts the first frame of a new source gets: the slot's clock advanced by wall time."""
        if self._last_wall is None:
            return 0
        elapsed = time.monotonic() - self._last_wall
        return self._last_pts + max(1, int(elapsed / time_base))

    async def recv(self) -> OutgoingFrame:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                frame = self._frames.popleft()
                now = time.monotonic()
                self._last_pts, self._last_wall = frame.pts, now
                self.frames_sent += 1
                delay = now - frame.queued_at
                self.delay_total += delay
                if delay > self.delay_max:
                    self.delay_max = delay
                return frame
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def stop(self) -> None:
        super().stop()
        self._source = None
        self._frames.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
