"""RtpRelay: what one slot sender puts on the wire, read back by aiortc's parser.

The sender, DTLS and ICE objects are stand-ins with the attributes the relay reads (the real
chain is exercised by tests/integration/media); SRTP is the identity here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import RtpPacket

from media import passthrough, rtp
from media.rtp import EncodedFrame
from tests.unit.media.frames import rtp_packet


class Udp:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple]] = []

    def sendto(self, data: bytes, addr: tuple) -> None:
        self.datagrams.append((data, addr))


def fake_sender(state=State.CONNECTED, nominated=True):
    udp = Udp()
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=udp), remote_addr=("192.0.2.9", 5))
    dtls = SimpleNamespace(
        _state=state,
        _tx_srtp=SimpleNamespace(protect=lambda data: data, protect_rtcp=lambda data: data),
        _register_rtp_sender=lambda sender, parameters: None,
        transport=SimpleNamespace(
            _connection=SimpleNamespace(_nominated={1: pair} if nominated else {})
        ),
    )
    sender = SimpleNamespace(transport=dtls, _ssrc=1111, _rtx_ssrc=2222)
    return sender, udp


def parameters(mid="2", rtx=True):
    codecs = [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)]
    if rtx:
        codecs.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx", clockRate=90000, payloadType=101, parameters={"apt": 100}
            )
        )
    return RTCRtpSendParameters(
        codecs=codecs,
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=9, uri=rtp.MID_URI),
            RTCRtpHeaderExtensionParameters(id=3, uri=rtp.ABS_SEND_TIME_URI),
        ],
        muxId=mid,
    )


def relay_for(sender) -> passthrough.RtpRelay:
    relay = passthrough.RtpRelay(sender)
    relay.configure(parameters())
    return relay


def three_packet_frame(ts: int) -> EncodedFrame:
    packets = [
        rtp_packet(500, ts, b"first", marker=False),
        rtp_packet(501, ts, b"", marker=False),  # padding only
        rtp_packet(502, ts, b"second", marker=False, start=False),
        rtp_packet(503, ts, b"last", marker=True, start=False),
    ]
    packets[1].payload = b""
    return EncodedFrame(packets, ts, False)


def parse(udp: Udp) -> list[RtpPacket]:
    from tests.unit.media.test_rtp import extension_map

    return [RtpPacket.parse(d, extension_map(mid=9, abs=3)) for d, _ in udp.datagrams]


def test_a_frame_goes_out_under_the_senders_header_with_payloads_unchanged():
    sender, udp = fake_sender()
    relay = relay_for(sender)
    assert relay.send(three_packet_frame(7000), 123456)
    out = parse(udp)
    assert [p.payload for p in out] == [b"\x10first", b"\x00second", b"\x00last"]
    assert {p.ssrc for p in out} == {1111} and {p.payload_type for p in out} == {100}
    assert {p.timestamp for p in out} == {123456}
    assert [p.marker for p in out] == [0, 0, 1]
    first = out[0].sequence_number
    assert [p.sequence_number for p in out] == [first, (first + 1) & 0xFFFF, (first + 2) & 0xFFFF]
    assert {p.extensions.mid for p in out} == {"2"}
    assert all(p.extensions.abs_send_time is not None for p in out)
    assert {addr for _, addr in udp.datagrams} == {("192.0.2.9", 5)}
    # what the relay's sender reports will carry
    assert relay.packets == 3
    assert relay.octets == len(b"\x10first\x00second\x00last")
    assert relay.send(three_packet_frame(10000), 126456)
    assert parse(udp)[3].sequence_number == (first + 3) & 0xFFFF  # numbering continues


@pytest.mark.parametrize(
    "state, nominated, configured",
    [
        (State.CONNECTING, True, True),
        (State.CONNECTED, False, True),
        (State.CONNECTED, True, False),
    ],
)
def test_nothing_is_sent_before_the_connection_is_up(state, nominated, configured):
    sender, udp = fake_sender(state, nominated)
    relay = passthrough.RtpRelay(sender)
    if configured:
        relay.configure(parameters())
    assert relay.send(three_packet_frame(0), 0) is False
    assert udp.datagrams == [] and relay.packets == 0


async def test_a_nack_is_answered_with_rtx_carrying_the_original_sequence_number():
    sender, udp = fake_sender()
    relay = relay_for(sender)
    relay.send(three_packet_frame(7000), 99)
    lost = parse(udp)[1]
    await relay.retransmit(lost.sequence_number)
    await relay.retransmit((lost.sequence_number + 1000) & 0xFFFF)  # never sent: ignored
    assert len(udp.datagrams) == 4 and relay.retransmitted == 1
    again = parse(udp)[3]
    assert again.ssrc == 2222 and again.payload_type == 101 and again.timestamp == 99
    assert again.payload == lost.sequence_number.to_bytes(2, "big") + lost.payload


async def test_without_rtx_a_nack_resends_the_packet_itself():
    sender, udp = fake_sender()
    relay = passthrough.RtpRelay(sender)
    relay.configure(parameters(rtx=False))
    relay.send(three_packet_frame(7000), 99)
    lost = parse(udp)[0]
    await relay.retransmit(lost.sequence_number)
    again = parse(udp)[3]
    assert (again.ssrc, again.sequence_number, again.payload) == (
        1111,
        lost.sequence_number,
        lost.payload,
    )


def test_audio_level_is_carried_when_the_subscriber_leg_negotiated_it():
    from tests.unit.media.test_rtp import extension_map

    sender, udp = fake_sender()
    relay = passthrough.RtpRelay(sender)
    params = parameters(rtx=False)
    params.codecs = [RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)]
    params.headerExtensions.append(RTCRtpHeaderExtensionParameters(id=1, uri=rtp.AUDIO_LEVEL_URI))
    relay.configure(params)
    packet = rtp_packet(1, 960, b"opus")
    packet.extensions.audio_level = (True, 30)
    relay.send(EncodedFrame([packet], 960, True), 960)
    out = RtpPacket.parse(udp.datagrams[0][0], extension_map(mid=9, abs=3, level=1))
    assert out.extensions.audio_level == (True, 30) and out.payload_type == 111
