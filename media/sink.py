"""Local sinks: subscribers inside this process (a recorder) instead of a WebRTC peer.

A sink gets exactly what a slot would: the publisher's encoded frames after the subscription's
keyframe gate (video starts on a keyframe), in the same event-loop turn they arrived in, and
nothing for an edge the plan does not contain. It must return quickly (queue, never write).
Media stays ignorant of what the sink is for: it sees a name and two callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from media.forwarder import Subscription
    from media.rtp import EncodedFrame

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    def on_frame(self, publisher: str, kind: str, frame: EncodedFrame) -> None:
        """One encoded frame of `publisher` (runs on the event loop: must not block)."""

    def on_end(self, publisher: str, kind: str) -> None:
        """The edge is gone (plan changed, publisher left or reconnected, sink detached)."""


class SinkPort:
    """Where one subscription of a sink lands: the slot-side interface of `Subscription`."""

    def __init__(self, sink: FrameSink, publisher: str, kind: str) -> None:
        self.sink = sink
        self.publisher = publisher
        self.kind = kind
        self._source: Subscription | None = None
        self.frames = 0
        self.errors = 0

    @property
    def source(self) -> Subscription | None:
        return self._source

    def set_source(self, source: Subscription | None) -> None:
        self._source = source

    def push(self, frame: EncodedFrame, source: Subscription) -> bool:
        if source is not self._source:
            return True
        self.frames += 1
        try:
            self.sink.on_frame(self.publisher, self.kind, frame)
        except Exception:  # noqa: BLE001 - a sink's bug must not stop forwarding to peers
            self.errors += 1
            if self.errors == 1:
                log.exception("sink failed on a frame of %s", self.publisher)
        return True

    def close(self) -> None:
        """Detach from the publisher and tell the sink the edge ended."""
        source, self._source = self._source, None
        if source is not None:
            source.close("sink edge removed")
        try:
            self.sink.on_end(self.publisher, self.kind)
        except Exception:  # noqa: BLE001
            log.exception("sink failed on the end of %s", self.publisher)
