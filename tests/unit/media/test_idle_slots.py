"""Idle slots cost nothing: a slot sender's RTCP runs only while a source is attached.

Stand-ins as in test_relay.py (SRTP is the identity); the real connection is
tests/integration/media/test_idle_slots.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtcpParameters
from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket

from media import passthrough
from media.forwarder import Forwarder
from media.slot import SlotTrack
from tests.unit.media.frames import encoded
from tests.unit.media.test_relay import Udp, parameters


def connected_sender():
    udp = Udp()
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=udp), remote_addr=("192.0.2.9", 5))
    registered = []
    dtls = SimpleNamespace(
        _state=State.CONNECTED,
        _tx_srtp=SimpleNamespace(protect=lambda d: d, protect_rtcp=lambda d: d),
        transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
        _register_rtp_sender=lambda sender, params: registered.append(sender),
    )
    sender = SimpleNamespace(transport=dtls, _ssrc=1111, _rtx_ssrc=2222)
    return sender, udp, registered


@pytest.fixture(autouse=True)
def short_interval(monkeypatch):
    monkeypatch.setattr(passthrough.random, "random", lambda: 0.0)
    monkeypatch.setattr(passthrough, "RTCP_INTERVAL", 0.1)  # 50 ms, then the 10 ms grid
    monkeypatch.setattr(passthrough, "RTCP_GRID", 0.01)


def slot():
    sender, udp, registered = connected_sender()
    relay = passthrough.RtpRelay(sender, active=False)
    p = parameters()
    p.rtcp = RTCRtcpParameters(cname="parley")
    relay.configure(p)
    return SlotTrack("audio", relay), relay, udp, registered


def reports(udp: Udp) -> list:
    return [
        pkt for data, _ in udp.datagrams if 192 <= data[1] <= 223 for pkt in RtcpPacket.parse(data)
    ]


async def test_an_idle_slot_has_no_timer_sends_nothing_and_is_not_routed():
    track, relay, udp, registered = slot()
    assert relay.ready and not relay.active and relay._report_timer is None
    await asyncio.sleep(0.08)
    assert udp.datagrams == [] and relay.reports == 0 and registered == []


async def test_attaching_a_source_starts_reports_detaching_stops_them():
    track, relay, udp, registered = slot()
    f = Forwarder("a", "audio", lambda: None)
    sub = f.subscribe("s", track)
    assert relay.active and relay._report_timer is not None
    assert registered == [relay.sender]  # PLI/NACK/reports routed to the sender from now on
    f.deliver(encoded(b"\x01opus", 960))
    await asyncio.sleep(0.08)
    rtcp = reports(udp)
    sr = [p for p in rtcp if isinstance(p, RtcpSrPacket)]
    assert relay.reports == 1 and len(sr) == 1
    assert sr[0].ssrc == 1111 and sr[0].sender_info.packet_count == 1
    assert sr[0].sender_info.rtp_timestamp == 0  # the slot's clock: the first frame's timestamp
    assert any(isinstance(p, RtcpSdesPacket) for p in rtcp)
    sub.close("plan changed")
    assert not relay.active and relay._report_timer is None
    await asyncio.sleep(0.08)
    assert relay.reports == 1


async def test_no_sender_report_before_media_was_sent():
    track, relay, udp, _ = slot()
    Forwarder("a", "video", lambda: None).subscribe("s", track)  # gated: no keyframe yet
    await asyncio.sleep(0.08)
    assert udp.datagrams == [] and relay.reports == 0
    assert relay._report_timer is not None  # still on the grid, waiting for media


async def test_stopping_the_track_stops_the_reports():
    track, relay, _, _ = slot()
    Forwarder("a", "audio", lambda: None).subscribe("s", track)
    track.stop()
    assert not relay.active and relay._report_timer is None


async def test_a_slot_holds_no_receive_state_and_no_retransmission_history_while_idle():
    from types import SimpleNamespace as NS

    from media.peer import PeerSession

    shape = NS(slots=[(str(2 + 2 * i), str(3 + 2 * i)) for i in range(7)])
    peer = PeerSession("p", shape, video_codec="VP8", connect_timeout=5, on_state=lambda *a: None)
    try:
        for slot in peer.slots:
            sender = slot.senders["video"]  # the sendonly transceiver's receiver is unused
            t = next(t for t in peer.pc.getTransceivers() if t.sender is sender)
            assert t.receiver._RTCRtpReceiver__remote_bitrate_estimator is None
            assert isinstance(
                t.receiver._RTCRtpReceiver__jitter_buffer, passthrough.AudioPassBuffer
            )
            assert all(r._history is None for r in slot.relays.values())
        # the uplink receivers keep theirs (REMB to the publisher)
        video = peer.publications["video"]
        assert video.receiver._RTCRtpReceiver__remote_bitrate_estimator is not None
    finally:
        await peer.close("test")


async def test_the_retransmission_history_is_allocated_with_the_first_frame():
    track, relay, udp, _ = slot()
    Forwarder("a", "audio", lambda: None).subscribe("s", track)
    assert relay._history is None
    await relay.retransmit(5)  # a NACK before anything was sent: nothing to answer
    track.push(encoded(b"\x01opus", 960), track.source)
    assert relay._history is not None and relay.packets == 1


async def test_a_relay_that_always_sends_reports_from_its_configuration():
    """The bench's publishers use the relay without slots: active from the start."""
    sender, udp, registered = connected_sender()
    relay = passthrough.RtpRelay(sender)
    relay.configure(parameters())
    assert relay.active and registered == [sender] and relay._report_timer is not None
    relay.close()
    assert relay._report_timer is None


async def test_unstarted_senders_and_receivers_share_their_events_and_queues():
    """aiortc gives every sender four asyncio Events and every receiver two, an error flag and
    a decoder queue.Queue; a slot's sender (aiortc's never starts: the relay sends) and the
    sendonly transceiver's receiver (never starts) share one of each instead; closing still
    completes, and the Python heap of a 7-slot peer falls by what those objects held."""
    import queue
    import threading
    import tracemalloc
    from types import SimpleNamespace as NS

    from media.peer import PeerSession

    shape = NS(slots=[(str(2 + 2 * i), str(3 + 2 * i)) for i in range(7)])

    def build():
        return PeerSession("p", shape, video_codec="VP8", connect_timeout=5, on_state=lambda *a: 0)

    peer = build()
    try:
        for slot in peer.slots:
            for sender in slot.senders.values():
                t = next(t for t in peer.pc.getTransceivers() if t.sender is sender)
                for name in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
                    assert getattr(sender, f"_RTCRtpSender__{name}") is passthrough._UNSTARTED
                r = t.receiver
                assert r._RTCRtpReceiver__rtcp_started is passthrough._UNSTARTED
                assert r._RTCRtpReceiver__decoder_queue is passthrough._NO_DECODER
                assert r._RTCRtpReceiver__decoder_error is passthrough._NO_DECODER_ERROR
        # the uplinks start (they receive the participant's media): they keep their own
        video = peer.publications["video"].receiver
        assert video._RTCRtpReceiver__rtcp_started is not passthrough._UNSTARTED
        assert not passthrough._UNSTARTED.is_set() and not passthrough._NO_DECODER_ERROR.is_set()
        # a stray frame put into an unused receiver's queue is dropped, not kept
        assert passthrough._NO_DECODER.put(("codec", b"frame")) is None
        assert passthrough._NO_DECODER.get() is None  # a decoder thread would end at once
    finally:
        await asyncio.wait_for(peer.close("test"), 5)  # stop() does not wait on shared Events

    # what sharing saves on the Python heap of a 7-slot peer: the same peers, then with every
    # transceiver given its own Events and queue again, as aiortc makes them
    def own_again(peer) -> None:
        for t in peer.pc.getTransceivers():
            for name in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
                setattr(t.sender, f"_RTCRtpSender__{name}", asyncio.Event())
            t.receiver._RTCRtpReceiver__rtcp_started = asyncio.Event()
            t.receiver._RTCRtpReceiver__rtcp_exited = asyncio.Event()
            t.receiver._RTCRtpReceiver__decoder_error = threading.Event()
            t.receiver._RTCRtpReceiver__decoder_queue = queue.Queue()

    def heap_per_peer(make) -> tuple[int, list]:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            peers = [make() for _ in range(3)]
            return (tracemalloc.get_traced_memory()[0] - before) // 3, peers
        finally:
            tracemalloc.stop()

    shared, peers = heap_per_peer(build)
    own, more = heap_per_peer(lambda: (p := build(), own_again(p))[0])
    for p in peers + more:
        await asyncio.wait_for(p.close("test"), 5)
    print(f"\nheap of a 7-slot peer: {shared / 1024:.0f} KiB shared, {own / 1024:.0f} KiB own")
    assert own - shared > 100 * 1024  # 16 senders' and 14 receivers' Events and queues
