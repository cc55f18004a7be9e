"""Fan-out of one publication to its subscriptions, with keyframe gating.

Forwarded frames are renumbered by each outgoing sender, so a subscriber cannot see a hole
upstream: a delta frame after a gap would decode into garbage. Every video subscription
therefore starts in "wait for keyframe" and goes back to it after upstream loss, a frame its
sender could not take, or a resume; the forwarder asks the publisher for one keyframe however many
subscribers wait, at most once per `KEYFRAME_INTERVAL`, and asks again while anyone still waits.
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


class Subscription:
    """One outgoing copy of a publication, delivered into one slot of the subscriber."""

    def __init__(self, forwarder: Forwarder, subscriber_id: str, sink: SlotTrack) -> None:
        self.forwarder = forwarder
        self.subscriber_id = subscriber_id
        self.sink = sink
        self.kind = forwarder.kind
        self.paused = False
        self.waiting_keyframe = forwarder.kind == "video"
        self.closed = False
        self.close_reason: str | None = None
        self.frames_forwarded = 0
        self.frames_gated = 0
        self.frames_unsent = 0

    def deliver(self, frame: EncodedFrame) -> None:
        if self.paused:
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

    def resync(self) -> None:
        """Hold video back until the next keyframe and ask the publisher for one."""
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
        self._clock = clock
        self.subscriptions: dict[str, Subscription] = {}
        self._last_request: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self.closed = False
        self.frames_in = 0
        self.keyframes_in = 0
        self.keyframe_requests = 0  # requests actually sent upstream
        self.keyframe_asks = 0  # requests asked for (before rate limiting)

    def subscribe(self, subscriber_id: str, sink: SlotTrack) -> Subscription:
        old = self.subscriptions.get(subscriber_id)
        if old is not None:
            old.close("replaced")
        sub = Subscription(self, subscriber_id, sink)
        self.subscriptions[subscriber_id] = sub
        sink.set_source(sub)
        if self.kind == "video":
            self.request_keyframe()
        return sub

    def remove(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.subscriber_id) is sub:
            del self.subscriptions[sub.subscriber_id]

    def deliver(self, frame: EncodedFrame) -> None:
        """One complete encoded frame from the publisher, to every subscription."""
        self.frames_in += 1
        if frame.is_keyframe and self.kind == "video":
            self.keyframes_in += 1
        for sub in list(self.subscriptions.values()):
            sub.deliver(frame)

    def upstream_loss(self) -> None:
        """The receiver gave up on lost packets: everyone waits for the next keyframe."""
        for sub in self.subscriptions.values():
            sub.waiting_keyframe = sub.kind == "video"
        self.request_keyframe()

    def _someone_waits(self) -> bool:
        return any(s.waiting_keyframe and not s.paused for s in self.subscriptions.values())

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, rate-limited; retried while anyone waits."""
        if self.kind != "video" or self.closed:
            return
        self.keyframe_asks += 1
        now = self._clock()
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
        now = self._clock()
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
        for sub in list(self.subscriptions.values()):
            sub.close(reason)
