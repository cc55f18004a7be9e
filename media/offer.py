"""Checks a participant's SDP offer against the shape Parley expects, before aiortc sees it.

Shape: audio sendonly (mic), video sendonly (camera), then K pairs of audio recvonly + video
recvonly (the slots). A missing mic or camera may be offered as sendonly without a track or as
inactive. Every problem is a `MediaError` whose code and message can go to the client as-is.
"""

from __future__ import annotations

import msgspec
from aiortc.sdp import SessionDescription

from media.errors import MediaError

MAX_SDP_BYTES = 64 * 1024
SEND_DIRECTIONS = ("sendonly", "inactive", "sendrecv")


class OfferShape(msgspec.Struct, frozen=True):
    """What the offer asks for: mids of its two uplinks and of each slot pair."""

    audio_mid: str
    video_mid: str
    slots: tuple[tuple[str, str], ...]  # (audio_mid, video_mid) per slot


def _codec_names(media) -> set[str]:
    return {c.mimeType.split("/", 1)[-1].lower() for c in media.rtp.codecs}


def check_offer(sdp: object, *, video_codec: str, max_slots: int) -> OfferShape:
    """Parse and check an offer; return its shape or raise MediaError."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise MediaError("bad_sdp", "the offer must be a non-empty SDP string")
    if len(sdp.encode("utf-8", "replace")) > MAX_SDP_BYTES:
        raise MediaError("bad_sdp", f"the offer is larger than {MAX_SDP_BYTES} bytes")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds of errors on garbage
        raise MediaError("bad_sdp", "the offer is not valid SDP") from exc
    media = desc.media
    if len(media) < 2 or any(m.kind not in ("audio", "video") for m in media):
        raise MediaError("bad_sdp", "the offer needs audio and video m-lines and nothing else")
    if any(not m.rtp.muxId for m in media):
        raise MediaError("bad_sdp", "every m-line needs a mid")
    if len({m.rtp.muxId for m in media}) != len(media):
        raise MediaError("bad_sdp", "mids must be unique")
    if any(m.dtls is None or not m.dtls.fingerprints for m in media):
        raise MediaError("bad_sdp", "every m-line needs a DTLS fingerprint")
    if any(m.ice is None or not m.ice.usernameFragment or not m.ice.password for m in media):
        raise MediaError("bad_sdp", "every m-line needs ICE credentials")
    mic, cam, rest = media[0], media[1], media[2:]
    if mic.kind != "audio" or cam.kind != "video":
        raise MediaError("bad_sdp", "the first two m-lines must be audio then video")
    for m in (mic, cam):
        if m.direction not in SEND_DIRECTIONS:
            raise MediaError("bad_sdp", f"m-line {m.rtp.muxId} must be sendonly")
    if len(rest) % 2:
        raise MediaError("bad_sdp", "slots come in audio + video pairs")
    slots = []
    for i in range(0, len(rest), 2):
        a, v = rest[i], rest[i + 1]
        if a.kind != "audio" or v.kind != "video":
            raise MediaError("bad_sdp", "each slot is an audio m-line then a video m-line")
        if a.direction != "recvonly" or v.direction != "recvonly":
            raise MediaError("bad_sdp", "slot m-lines must be recvonly")
        slots.append((a.rtp.muxId, v.rtp.muxId))
    if len(slots) > max_slots:
        raise MediaError("too_many_slots", f"at most {max_slots} slots may be offered")
    want_video = video_codec.lower()
    for m in media:
        names = _codec_names(m)
        if m.kind == "audio" and "opus" not in names:
            raise MediaError("codec_unsupported", "this session needs Opus audio")
        if m.kind == "video" and want_video not in names:
            raise MediaError("codec_unsupported", f"this session needs {video_codec} video")
    return OfferShape(mic.rtp.muxId, cam.rtp.muxId, tuple(slots))


# Opus in the answer: in-band FEC (the publisher's encoder adds redundancy for the previous
# frame when the loss it is told about in receiver reports rises; the receiving browser rebuilds
# a lost frame from the next one) and DTX (silence costs ~1 packet per 400 ms instead of 50 per
# second). An fmtp in the answer states what its author wants to *receive*; the server forwards
# the publisher's packets unchanged, so this reaches every subscriber's decoder. aiortc writes no
# fmtp for Opus (its own encoder does not read one), so the answer's text is completed here.
OPUS_FMTP = {"minptime": "10", "useinbandfec": "1", "usedtx": "1"}


def with_opus_fmtp(sdp: str) -> str:
    """The SDP with ``useinbandfec=1;usedtx=1`` (and minptime=10) on every Opus payload type,
    merged into an existing fmtp line or added after the rtpmap; other lines unchanged."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    opus_pts = set()
    for line in lines:
        if line.startswith("a=rtpmap:") and " " in line:
            pt, codec = line[len("a=rtpmap:") :].split(" ", 1)
            if codec.lower().startswith("opus/"):
                opus_pts.add(pt)
    if not opus_pts:
        return sdp
    with_fmtp = {
        line[len("a=fmtp:") :].split(" ", 1)[0] for line in lines if line.startswith("a=fmtp:")
    }
    out = []
    for line in lines:
        if line.startswith("a=fmtp:"):
            pt, _, params = line[len("a=fmtp:") :].partition(" ")
            if pt in opus_pts:
                pairs = dict(p.split("=", 1) for p in params.split(";") if "=" in p)
                pairs.update(OPUS_FMTP)
                line = f"a=fmtp:{pt} " + ";".join(f"{k}={v}" for k, v in pairs.items())
        out.append(line)
        if line.startswith("a=rtpmap:"):
            pt = line[len("a=rtpmap:") :].split(" ", 1)[0]
            if pt in opus_pts and pt not in with_fmtp:
                out.append(f"a=fmtp:{pt} " + ";".join(f"{k}={v}" for k, v in OPUS_FMTP.items()))
    return eol.join(out)
