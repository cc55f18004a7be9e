"""The relay's retransmission history is sized by what a NACK can still repair.

A video packet stays retransmittable for max(RTX_WINDOW (2 s), 3 x RTT) (at most RTX_HISTORY
packets); a NACK inside that window is answered, an older packet is gone (not answered, not
held); an audio sender keeps no history at all (Opus is never negotiated with NACK).

Stand-ins as in test_relay.py (SRTP is the identity, a fake UDP transport); the relay's clock is
a fake one (`passthrough.time`), so the window is crossed without waiting for it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media import passthrough
from media.rtp import EncodedFrame
from tests.unit.media.frames import rtp_packet
from tests.unit.media.test_relay import fake_sender, parameters, parse


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(passthrough, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


def frame(ts: int, n: int = 2) -> EncodedFrame:
    packets = [
        rtp_packet(ts + i, ts, b"p%d" % i, marker=i == n - 1, start=i == 0) for i in range(n)
    ]
    return EncodedFrame(packets, ts, True)


def video_relay():
    sender, udp = fake_sender()
    relay = passthrough.RtpRelay(sender)
    relay.configure(parameters())  # VP8 + RTX
    return relay, udp


def rtx_sent(udp, relay) -> list[int]:
    """Original sequence numbers carried by the RTX packets sent (RFC 4588 OSN)."""
    return [int.from_bytes(p.payload[:2], "big") for p in parse(udp) if p.ssrc == 2222]


async def test_a_nack_within_the_window_is_answered(clock):
    relay, udp = video_relay()
    relay.send(frame(0), 0)
    first = parse(udp)[0].sequence_number
    clock.now += 0.4  # a NACK ~2 RTTs later on a 200 ms RTT link
    relay.send(frame(3000), 3000)
    clock.now += 1.5  # 1.9 s after the first packet (a 1.5 s burst's oldest): inside 2 s
    await relay.retransmit(first)
    await relay.retransmit((first + 3) & 0xFFFF)
    assert rtx_sent(udp, relay) == [first, (first + 3) & 0xFFFF]
    assert relay.retransmitted == 2


async def test_a_packet_older_than_the_window_is_gone(clock):
    relay, udp = video_relay()
    relay.send(frame(0), 0)
    first = parse(udp)[0].sequence_number
    clock.now += passthrough.RTX_WINDOW + 0.01
    await relay.retransmit(first)  # too old: not answered even before anything pruned it
    assert relay.retransmitted == 0
    relay.send(frame(3000), 3000)  # the next frame drops what left the window
    assert [e[1] for e in relay._history] == [(first + 2) & 0xFFFF, (first + 3) & 0xFFFF]
    await relay.retransmit(first)
    await relay.retransmit((first + 1) & 0xFFFF)
    assert relay.retransmitted == 0 and rtx_sent(udp, relay) == []
    await relay.retransmit((first + 2) & 0xFFFF)  # the new frame is answered
    assert rtx_sent(udp, relay) == [(first + 2) & 0xFFFF]


async def test_a_steady_stream_holds_about_one_window_of_packets(clock):
    relay, _ = video_relay()
    for i in range(300):  # 10 s of 30 fps video, 2 packets a frame
        relay.send(frame(i * 3000), i * 3000)
        clock.now += 1 / 30
    # 2 s of it (61 frames: the boundary frame included), not the 512-packet ring it used to be
    assert 120 <= len(relay._history) <= 122


async def test_a_long_round_trip_widens_the_window_to_three_rtts(clock):
    relay, udp = video_relay()
    relay._sr_sent[0x1234] = clock.now  # a sender report the receiver report below echoes
    clock.now += 0.9
    rr = RtcpRrPacket(ssrc=9, reports=[_report_block(1111, lsr=0x1234, dlsr=0)])
    relay.feedback(rr)
    assert relay.rtx_window == pytest.approx(2.7)  # 3 x 900 ms
    relay.send(frame(0), 0)
    first = parse(udp)[0].sequence_number
    clock.now += 2.5
    relay.send(frame(3000), 3000)
    await relay.retransmit(first)  # 2.5 s old, inside 3 x RTT
    assert rtx_sent(udp, relay) == [first]
    clock.now += 0.3
    await relay.retransmit(first)  # 2.8 s old: gone
    assert relay.retransmitted == 1


async def test_the_history_is_capped_in_packets_whatever_the_bitrate(clock):
    relay, udp = video_relay()
    relay.send(frame(0, n=passthrough.RTX_HISTORY + 10), 0)  # one huge frame, same instant
    first = parse(udp)[0].sequence_number
    assert len(relay._history) == passthrough.RTX_HISTORY
    await relay.retransmit(first)  # pushed out by the cap
    assert relay.retransmitted == 0
    last = (first + passthrough.RTX_HISTORY + 9) & 0xFFFF
    await relay.retransmit(last)
    oldest_kept = (first + 10) & 0xFFFF
    await relay.retransmit(oldest_kept)
    assert rtx_sent(udp, relay) == [last, oldest_kept]


async def test_sequence_numbers_wrapping_around_are_found(clock):
    relay, udp = video_relay()
    relay._seq = 0xFFFE
    relay.send(frame(0, n=4), 0)
    assert [p.sequence_number for p in parse(udp)] == [0xFFFE, 0xFFFF, 0, 1]
    await relay.retransmit(0xFFFF)
    await relay.retransmit(1)
    await relay.retransmit(2)  # never sent
    assert rtx_sent(udp, relay) == [0xFFFF, 1]


async def test_an_audio_sender_keeps_no_history(clock):
    sender, udp = fake_sender()
    relay = passthrough.RtpRelay(sender)
    relay.configure(
        RTCRtpSendParameters(
            codecs=[
                RTCRtpCodecParameters(
                    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
                )
            ],
            muxId="3",
        )
    )
    for i in range(50):
        relay.send(frame(i * 960, n=1), i * 960)
        clock.now += 0.02
    assert relay.packets == 50 and relay._history is None
    sent = len(udp.datagrams)
    await relay.retransmit(parse(udp)[-1].sequence_number)
    assert relay.retransmitted == 0 and len(udp.datagrams) == sent


def test_aiortc_never_negotiates_nack_for_audio():
    """Why audio keeps none: aiortc's audio codecs carry no rtcp-fb (an answer only keeps
    feedback both sides list), while its video codecs carry NACK."""
    assert CODECS["audio"] and all(not c.rtcpFeedback for c in CODECS["audio"])
    assert all(
        any(f.type == "nack" for f in c.rtcpFeedback)
        for c in CODECS["video"]
        if not c.mimeType.lower().endswith("/rtx")
    )


def _report_block(ssrc: int, *, lsr: int, dlsr: int) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc,
        fraction_lost=0,
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=lsr,
        dlsr=dlsr,
    )
