"""The byte rate over a sliding window, as aiortc's `RateCounter` computes it, in O(1).

aiortc's REMB estimator keeps the incoming bitrate in 1 ms buckets and, on every packet, walks
every millisecond that passed since the last one (twice): about 20 steps of Python per video
packet. This keeps the packets of the window in a deque instead and gives the same figures
(checked against aiortc's class by a property test); media/passthrough.py swaps it in.
"""

from __future__ import annotations

import collections


class WindowRate:
    """Drop-in for `aiortc.rate.RateCounter(window_size, scale)` with nondecreasing times."""

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window_size = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        self._entries: collections.deque[tuple[int, int]] = collections.deque()
        self._origin_ms: int | None = None
        self._count = 0
        self._total = 0

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._entries.append((now_ms, value))
        self._count += 1
        self._total += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._total / active_window_size)
        return None

    def _erase_old(self, now_ms: int) -> None:
        new_origin_ms = now_ms - self._window_size + 1
        if self._origin_ms >= new_origin_ms:
            return
        self._origin_ms = new_origin_ms
        entries = self._entries
        while entries and entries[0][0] < new_origin_ms:
            _, value = entries.popleft()
            self._count -= 1
            self._total -= value
