"""A slot whose source is detached holds none of that source's packets: its retransmission
history (up to RTX_HISTORY payloads) goes with the source, so an idle slot that once carried
someone costs what a never-used one costs. While a source is attached, or switched to another
source without a gap, NACKs are still answered from the history.

Stand-ins as in test_idle_slots.py (SRTP is the identity, a fake UDP transport).
"""

from __future__ import annotations

from media.forwarder import Forwarder
from tests.unit.media.frames import encoded
from tests.unit.media.test_idle_slots import short_interval, slot  # noqa: F401 (fixture)


def sent_sequence_numbers(udp) -> list[int]:
    rtcp = range(192, 224)  # RTCP packet types (as test_idle_slots.reports reads them)
    return [int.from_bytes(d[2:4], "big") for d, _ in udp.datagrams if d[1] not in rtcp]


async def test_detaching_the_source_drops_the_history_and_nacks_go_unanswered():
    track, relay, udp, _ = slot()
    f = Forwarder("a", "audio", lambda: None)
    sub = f.subscribe("s", track)
    f.deliver(encoded(b"\x01opus", 960))
    (seq,) = sent_sequence_numbers(udp)
    assert relay._history is not None
    sent = len(udp.datagrams)
    await relay.retransmit(seq)  # attached: answered
    assert relay.retransmitted == 1 and len(udp.datagrams) == sent + 1
    sub.close("plan changed")
    assert not relay.active and relay._history is None
    await relay.retransmit(seq)  # detached: nothing kept, nothing sent
    assert relay.retransmitted == 1 and len(udp.datagrams) == sent + 1


async def test_switching_straight_to_another_source_keeps_the_history():
    track, relay, udp, _ = slot()
    a, b = Forwarder("a", "audio", lambda: None), Forwarder("b", "audio", lambda: None)
    a.subscribe("s", track)
    a.deliver(encoded(b"\x01opus", 960))
    (seq,) = sent_sequence_numbers(udp)
    b.subscribe("s", track)  # the slot now carries b, never idle in between
    assert relay.active and relay._history is not None
    await relay.retransmit(seq)
    assert relay.retransmitted == 1


async def test_stopping_the_track_drops_the_history():
    track, relay, _, _ = slot()
    f = Forwarder("a", "audio", lambda: None)
    f.subscribe("s", track)
    f.deliver(encoded(b"\x01opus", 960))
    track.stop()
    assert relay._history is None
