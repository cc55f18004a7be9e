"""Round-trip time to one participant, from the receiver reports of its slot senders.

The server only *receives* the participant's own media, and a receiver cannot time a round trip
on its own; but the same connection carries the slots the participant receives, whose sender
reports come back as LSR / DLSR in the participant's receiver reports (RFC 3550 6.4.1). The
publisher's video hole wait follows this (a NACK answered by the publisher takes one round trip
on the same path): `VideoJitterBuffer.set_rtt`.
"""

from __future__ import annotations

from collections.abc import Callable

# RFC 6298's gains: quick to follow a link that got slower (the variance term jumps), smooth
# against the ±jitter of single samples.
ALPHA = 0.125
BETA = 0.25
MAX_SAMPLE = 5.0  # seconds; a larger "round trip" is a clock step or a stale report


class RttEstimator:
    """Smoothed RTT and its variation; `timeout` is when an answer is overdue (RFC 6298's RTO
    without its 1 s floor: a NACK is cheap to repeat)."""

    def __init__(self, on_change: Callable[[RttEstimator], None] | None = None) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0
        self._on_change = on_change

    def add(self, sample: float) -> None:
        if not 0.0 <= sample <= MAX_SAMPLE:
            return
        self.samples += 1
        if self.srtt is None:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - sample)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * sample
        if self._on_change is not None:
            self._on_change(self)

    @property
    def timeout(self) -> float | None:
        """When a retransmission asked for now should have arrived (None: no sample yet)."""
        if self.srtt is None:
            return None
        return self.srtt + max(0.02, 4 * self.rttvar)
