"""The answer asks publishers for Opus in-band FEC and DTX (media/offer.with_opus_fmtp)."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from media.offer import with_opus_fmtp

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "m=audio 9 UDP/TLS/RTP/SAVPF 109",
        "a=rtpmap:109 OPUS/48000/2",
        "a=fmtp:109 minptime=20;stereo=1",
        "",
    ]
)


def fmtp(sdp: str) -> dict[str, dict]:
    out = {}
    for m in SessionDescription.parse(sdp).media:
        for c in m.rtp.codecs:
            out[f"{m.kind}:{c.payloadType}"] = {k: str(v) for k, v in c.parameters.items()}
    return out


def test_every_opus_payload_gets_fec_and_dtx_and_nothing_else_changes():
    got = with_opus_fmtp(ANSWER)
    params = fmtp(got)
    assert params["audio:111"] == {"minptime": "10", "useinbandfec": "1", "usedtx": "1"}
    # an existing fmtp is merged: stereo stays, the answer's own values win for ours
    assert params["audio:109"] == {
        "minptime": "10",
        "stereo": "1",
        "useinbandfec": "1",
        "usedtx": "1",
    }
    assert params["video:97"] == {"apt": "96"}
    assert got.count("a=fmtp:111 ") == 1 and got.count("a=fmtp:109 ") == 1
    assert got.endswith("\r\n") and "\n\n" not in got.replace("\r\n", "\n")
    # idempotent
    assert with_opus_fmtp(got) == got


def test_no_opus_no_change():
    sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    assert with_opus_fmtp(sdp) == sdp
