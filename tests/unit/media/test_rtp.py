"""The relay's RTP writing, read back by aiortc's own parser."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media import rtp


def extension_map(**ids: int) -> HeaderExtensionsMap:
    uris = {"mid": rtp.MID_URI, "abs": rtp.ABS_SEND_TIME_URI, "level": rtp.AUDIO_LEVEL_URI}
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uris[k]) for k, i in ids.items()
            ]
        )
    )
    return m


@pytest.mark.parametrize(
    "elements, expected",
    [
        ([], b""),
        ([(0, b"x")], b""),  # id 0: not negotiated on this leg, left out
        ([(1, b"0")], b"\xbe\xde\x00\x01" + b"\x10" + b"0" + b"\x00\x00"),
        ([(3, b"\x01\x02\x03")], b"\xbe\xde\x00\x01" + b"\x32\x01\x02\x03"),
        ([(1, b"12"), (3, b"abc")], b"\xbe\xde\x00\x02" + b"\x1112" + b"\x32abc" + b"\x00"),
    ],
)
def test_extension_block_layout(elements, expected):
    assert rtp.extension_block(elements) == expected


@pytest.mark.parametrize("ext_id, value", [(15, b"x"), (1, b""), (1, b"x" * 17)])
def test_extension_block_refuses_what_one_byte_headers_cannot_carry(ext_id, value):
    with pytest.raises(ValueError):
        rtp.extension_block([(ext_id, value)])


@pytest.mark.parametrize("marker", [False, True])
def test_packets_parse_back_with_aiortc(marker):
    ext = rtp.extension_block([(4, b"3"), (2, (123456).to_bytes(3, "big")), (7, b"\x95")])
    data = rtp.rtp_packet(111, marker, 65535, (1 << 32) + 5, 0xDEADBEEF, ext, b"payload")
    packet = RtpPacket.parse(data, extension_map(mid=4, abs=2, level=7))
    assert packet.payload_type == 111 and packet.marker == int(marker)
    assert packet.sequence_number == 65535 and packet.timestamp == 5  # wrapped at 32 bits
    assert packet.ssrc == 0xDEADBEEF and packet.payload == b"payload"
    assert packet.extensions.mid == "3"
    assert packet.extensions.abs_send_time == 123456
    assert packet.extensions.audio_level == (True, 0x15)


def test_a_packet_without_extensions_has_no_extension_bit():
    data = rtp.rtp_packet(96, False, 1, 2, 3, b"", b"x")
    assert data[0] == 0x80 and RtpPacket.parse(data).payload == b"x"


def test_abs_send_time_is_ntp_time_in_6_18_fixed_point():
    now = 1_700_000_000.25
    ntp_seconds = int(now) + rtp.NTP_OFFSET
    assert rtp.abs_send_time(rtp.ntp_time(now)) == ((ntp_seconds % 64) << 18) | (1 << 16)  # .25 s


@pytest.mark.parametrize(
    "payload, starts",
    [
        (b"\x10\x00", True),
        (b"\x90\x80\x01", True),
        (b"\x00\x00", False),
        (b"\x11", False),
        (b"", False),
    ],
)
def test_vp8_descriptor_start_of_frame(payload, starts):
    assert rtp.vp8_descriptor_starts_frame(payload) is starts


@pytest.mark.parametrize(
    "mid_id, mid, abs_id, level_id, level",
    [
        (1, b"0", 3, 0, None),
        (1, b"12", 3, 0, None),
        (9, b"abcdefgh", 2, 0, None),
        (0, b"", 3, 0, None),
        (1, b"0", 0, 0, None),
        (1, b"0", 0, 2, (True, 33)),
        (4, b"3", 2, 7, (False, 127)),
        (4, b"3", 2, 0, (False, 127)),  # level not negotiated on this leg: left out
    ],
)
def test_extension_writer_matches_the_general_block(mid_id, mid, abs_id, level_id, level):
    writer = rtp.ExtensionWriter(mid_id, mid, abs_id, level_id)
    elements = [(mid_id, mid), (abs_id, (0xABCDEF).to_bytes(3, "big"))]
    if level is not None:
        elements.append((level_id, bytes([(0x80 if level[0] else 0) | level[1]])))
    assert writer.block(0xABCDEF, level) == rtp.extension_block(elements)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x80\x60", True),
        (b"\xbf", True),
        (b"\x00\x01", False),
        (b"\x16\xfe", False),
        (b"\xc0", False),
        (b"", False),
    ],
)
def test_rfc_7983_demultiplexing(data, expected):
    assert rtp.is_rtp_or_rtcp(data) is expected
