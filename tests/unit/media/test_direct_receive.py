"""DirectReceive: SRTP handled in the datagram callback, everything else still queued."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pylibsrtp
from aiortc.rtcdtlstransport import State

from media import passthrough

RTP = b"\x80\x60" + b"\x00" * 20
RTCP = b"\x80\xc8" + b"\x00" * 20  # sender report
DTLS = b"\x16\xfe\xfd" + b"\x00" * 20


class Srtp:
    def unprotect(self, data):
        if data.endswith(b"forged"):
            raise pylibsrtp.Error("authentication failed")
        return b"rtp:" + data

    def unprotect_rtcp(self, data):
        return b"rtcp:" + data


class Dtls:
    def __init__(self, state=State.CONNECTED, srtp=True):
        self._state = state
        self._rx_srtp = Srtp() if srtp else None
        self.handled: list[bytes] = []
        self.gate: asyncio.Future | None = None
        queue: list = []
        self.transport = SimpleNamespace(
            _connection=SimpleNamespace(
                data_received=lambda data, component: queue.append(data),
                queue=queue,
                _protocols=[],
            )
        )

    async def _handle_rtp_data(self, data, arrival_time_ms):
        if self.gate is not None:
            await self.gate
        self.handled.append(data)

    async def _handle_rtcp_data(self, data):
        self.handled.append(data)


def test_srtp_is_handled_at_once_and_the_rest_goes_to_aiortcs_queue():
    dtls = Dtls()
    direct = passthrough.receive_directly(dtls)
    connection = dtls.transport._connection
    connection.data_received(RTP, 1)
    connection.data_received(RTCP, 1)
    connection.data_received(DTLS, 1)
    assert dtls.handled == [b"rtp:" + RTP, b"rtcp:" + RTCP]
    assert connection.queue == [DTLS] and direct.packets == 2


def test_before_the_handshake_everything_is_queued():
    for dtls in (Dtls(state=State.CONNECTING), Dtls(srtp=False)):
        passthrough.receive_directly(dtls)
        dtls.transport._connection.data_received(RTP, 1)
        assert dtls.handled == [] and dtls.transport._connection.queue == [RTP]


def test_empty_and_forged_datagrams_are_dropped_without_harm():
    dtls = Dtls()
    passthrough.receive_directly(dtls)
    connection = dtls.transport._connection
    connection.data_received(b"", 1)  # would end aiortc's receive loop (data[0])
    connection.data_received(RTP + b"forged", 1)
    connection.data_received(RTP, 1)
    assert dtls.handled == [b"rtp:" + RTP] and connection.queue == []


async def test_a_handler_that_really_waits_is_finished_when_what_it_awaits_is_done():
    dtls = Dtls()
    direct = passthrough.receive_directly(dtls)
    dtls.gate = asyncio.get_running_loop().create_future()
    dtls.transport._connection.data_received(RTP, 1)
    assert dtls.handled == [] and direct.suspended == 1
    dtls.gate.set_result(None)
    await asyncio.sleep(0)
    assert dtls.handled == [b"rtp:" + RTP]


def test_a_failing_handler_is_counted_and_the_next_packet_still_handled():
    dtls = Dtls()
    direct = passthrough.receive_directly(dtls)

    async def broken(data, arrival_time_ms):
        raise RuntimeError("bug")

    dtls._handle_rtp_data = broken
    dtls.transport._connection.data_received(RTP, 1)
    dtls.transport._connection.data_received(RTCP, 1)
    assert direct.errors == 1 and dtls.handled == [b"rtcp:" + RTCP]


def test_rtp_skips_aioices_stun_parsing_and_stun_still_gets_it():
    dtls = Dtls()
    parsed: list[bytes] = []
    connection = dtls.transport._connection
    protocol = SimpleNamespace(
        receiver=connection,
        local_candidate=SimpleNamespace(component=1),
        datagram_received=lambda data, addr: parsed.append(data),
    )
    connection._protocols.append(protocol)
    passthrough.receive_directly(dtls)
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12  # a binding request
    protocol.datagram_received(RTP, ("192.0.2.9", 5))
    protocol.datagram_received(stun, ("192.0.2.9", 5))
    protocol.datagram_received(b"", ("192.0.2.9", 5))
    assert dtls.handled == [b"rtp:" + RTP]  # straight to SRTP, no STUN parse attempt
    assert parsed == [stun, b""]  # aioice's own path, as before
