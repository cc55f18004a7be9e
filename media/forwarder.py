"""Fan-out of one publication to its subscriptions, with keyframe gating.

Forwarded frames are renumbered by each outgoing sender, so a subscriber cannot see a hole
upstream: a delta frame after a gap would decode into garbage. Every video subscription
therefore starts in "wait for keyframe" and goes back to it after upstream loss, a frame its
sender could not take, or a resume; the forwarder asks the publisher for one keyframe however many
subscribers wait, at most once per `KEYFRAME_INTERVAL`, and asks again while anyone still waits.

A subscription may be **keyframes only** (`keyframe_interval` > 0: a thumbnail of a grid): it
forwards nothing but keyframes, at most one per 0.75 x the interval, so its receiver decodes a
picture every couple of seconds instead of the full rate. Each keyframe decodes on its own, so
the renumbered sequence numbers (gap-free, written by the slot's relay) and the jumping VP8
picture ids do not matter. The forwarder then asks the publisher for a keyframe once per the
shortest such interval (one timer per publisher however many subscribe that way), unless one
arrived anyway within that interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media.rtp import EncodedFrame
    from media.slot import SlotTrack

KEYFRAME_INTERVAL = 0.5  # at most one request to a publisher per this many seconds
KEYFRAME_RETRY = 1.0  # ask again while a subscriber still waits
THUMBNAIL_GAP = 0.75  # a keyframes-only subscription skips keyframes closer than this x interval


class Subscription:
    """One outgoing copy of a publication, delivered into one slot of the subscriber."""

    def __init__(
        self,
        forwarder: Forwarder,
        subscriber_id: str,
        sink: SlotTrack,
        keyframe_interval: float = 0.0,
    ) -> None:
        self.forwarder = forwarder
        self.keyframe_interval = keyframe_interval if forwarder.kind == "video" else 0.0
        self._last_keyframe: float | None = None
        self.subscriber_id = subscriber_id
        self.sink = sink
        self.kind = forwarder.kind
        self.paused = False
        self.waiting_keyframe = forwarder.kind == "video" and not self.keyframe_interval
        self.closed = False
        self.close_reason: str | None = None
        self.frames_forwarded = 0
        self.frames_gated = 0
        self.frames_unsent = 0

    def deliver(self, frame: EncodedFrame) -> None:
        if self.paused:
            return
        if self.keyframe_interval:
            self._deliver_keyframe(frame)
            return
        if self.waiting_keyframe:
            if not frame.is_keyframe:
                self.frames_gated += 1
                return
            self.waiting_keyframe = False
        if self.sink.push(frame, self):
            self.frames_forwarded += 1
        else:
            self.frames_unsent += 1
            self.resync()

    def _deliver_keyframe(self, frame: EncodedFrame) -> None:
        """Keyframes only, spaced: a frame the sender could not take needs no resync (the next
        one is a keyframe anyway)."""
        now = self.forwarder.clock()
        if not frame.is_keyframe or (
            self._last_keyframe is not None
            and now - self._last_keyframe < THUMBNAIL_GAP * self.keyframe_interval
        ):
            self.frames_gated += 1
            return
        self._last_keyframe = now
        if self.sink.push(frame, self):
            self.frames_forwarded += 1
        else:
            self.frames_unsent += 1
            self._last_keyframe = None

    def resync(self) -> None:
        """Hold video back until the next keyframe and ask the publisher for one."""
        if self.keyframe_interval:
            self._last_keyframe = None
            return
        if self.kind == "video" and not self.closed:
            self.waiting_keyframe = True
            self.forwarder.request_keyframe()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self.resync()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        if self.sink.source is self:
            self.sink.set_source(None)
        self.forwarder.remove(self)

    def to_dict(self) -> dict:
        return {
            "publisher": self.forwarder.publisher_id,
            "subscriber": self.subscriber_id,
            "kind": self.kind,
            "paused": self.paused,
            "keyframe_interval": self.keyframe_interval,
            "waiting_keyframe": self.waiting_keyframe,
            "frames_forwarded": self.frames_forwarded,
        }


class Forwarder:
    """Owns the subscriptions of one publication and brokers its keyframe requests."""

    def __init__(
        self,
        publisher_id: str,
        kind: str,
        send_keyframe_request: Callable[[], bool | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher_id = publisher_id
        self.kind = kind
        self._send_request = send_keyframe_request
        self.clock = clock
        self.subscriptions: dict[str, Subscription] = {}
        self._last_request: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._periodic: asyncio.TimerHandle | None = None  # keyframes-only subscriptions' asks
        self._last_keyframe_in: float | None = None
        self.closed = False
        self.frames_in = 0
        self.bytes_in = 0  # RTP payload bytes of the frames delivered (the link's bitrate)
        self.last_in: float | None = None  # clock() of the last frame (the link's liveness)
        self.keyframes_in = 0
        self.keyframe_requests = 0  # requests actually sent upstream
        self.keyframe_asks = 0  # requests asked for (before rate limiting)

    def subscribe(
        self, subscriber_id: str, sink: SlotTrack, keyframe_interval: float = 0.0
    ) -> Subscription:
        old = self.subscriptions.get(subscriber_id)
        if old is not None:
            old.close("replaced")
        sub = Subscription(self, subscriber_id, sink, keyframe_interval)
        self.subscriptions[subscriber_id] = sub
        sink.set_source(sub)
        if self.kind == "video":
            self.request_keyframe()
            if sub.keyframe_interval and self._periodic is None:
                self._arm_periodic()
        return sub

    def remove(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.subscriber_id) is sub:
            del self.subscriptions[sub.subscriber_id]

    def _thumbnail_interval(self) -> float | None:
        intervals = [
            s.keyframe_interval for s in self.subscriptions.values() if s.keyframe_interval
        ]
        return min(intervals) if intervals else None

    def _arm_periodic(self, delay: float | None = None) -> None:
        interval = self._thumbnail_interval()
        if interval is None or self.closed:
            self._periodic = None
            return
        delay = interval if delay is None else delay
        self._periodic = asyncio.get_running_loop().call_later(delay, self._periodic_ask)

    def _periodic_ask(self) -> None:
        """One ask per interval for all keyframes-only subscribers of this publisher, put off
        when a keyframe arrived within it anyway (somebody else asked, or the encoder chose)."""
        interval = self._thumbnail_interval()
        last = self._last_keyframe_in
        if interval is not None and last is not None:
            age = self.clock() - last
            if age < THUMBNAIL_GAP * interval:
                self._arm_periodic(interval - age)
                return
        if interval is not None:
            self.request_keyframe()
        self._arm_periodic()

    def deliver(self, frame: EncodedFrame) -> None:
        """One complete encoded frame from the publisher, to every subscription."""
        self.frames_in += 1
        self.bytes_in += sum(len(p.payload) for p in frame.packets)
        self.last_in = self.clock()
        if frame.is_keyframe and self.kind == "video":
            self.keyframes_in += 1
            self._last_keyframe_in = self.last_in
        for sub in list(self.subscriptions.values()):
            sub.deliver(frame)

    def upstream_loss(self) -> None:
        """The receiver gave up on lost packets: everyone waits for the next keyframe."""
        for sub in self.subscriptions.values():
            sub.waiting_keyframe = sub.kind == "video" and not sub.keyframe_interval
        self.request_keyframe()

    def _someone_waits(self) -> bool:
        return any(s.waiting_keyframe and not s.paused for s in self.subscriptions.values())

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, rate-limited; retried while anyone waits."""
        if self.kind != "video" or self.closed:
            return
        self.keyframe_asks += 1
        now = self.clock()
        due = (
            now if self._last_request is None else max(now, self._last_request + KEYFRAME_INTERVAL)
        )
        if self._timer is not None:
            if self._timer_due <= due:
                return  # an earlier request already covers this one
            self._timer.cancel()
            self._timer = None
        if due <= now:
            self._fire()
        else:
            self._arm(due - now, now)

    def _arm(self, delay: float, now: float, retry: bool = False) -> None:
        self._timer_due = now + delay
        callback = self._retry if retry else self._fire
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _retry(self) -> None:
        self._timer = None
        if self._someone_waits():
            self._fire()

    def _fire(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.clock()
        # False: nothing could be sent (no media from the publisher yet); that must not hold
        # back the next request for KEYFRAME_INTERVAL
        if self._send_request() is not False:
            self._last_request = now
            self.keyframe_requests += 1
        if self._someone_waits():
            self._arm(KEYFRAME_RETRY, now, retry=True)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None
        for sub in list(self.subscriptions.values()):
            sub.close(reason)
