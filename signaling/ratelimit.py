"""Per-connection rate limiting."""

from __future__ import annotations

import time


class RateLimiter:
    """Token bucket per connection: a phone sends a handful of events a second at most."""

    def __init__(self, rate: float = 10.0, burst: float = 30.0, clock=time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = burst, clock()
        self.refused = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.refused += 1
        return False
