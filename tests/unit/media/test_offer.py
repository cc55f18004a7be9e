"""Offer checks: every malformed or unsupported offer gets a clear code before aiortc sees it."""

from __future__ import annotations

import pytest

from bench.bot import Bot
from media.errors import MediaError
from media.offer import MAX_SDP_BYTES, check_offer


async def offer(slots=2, **kw) -> str:
    bot = Bot(f"offer-{slots}", slots=slots, **kw)
    try:
        return await bot.create_offer()
    finally:
        await bot.close()


def code_of(sdp, max_slots=7, codec="VP8") -> str:
    with pytest.raises(MediaError) as info:
        check_offer(sdp, video_codec=codec, max_slots=max_slots)
    return info.value.code


async def test_a_good_offer_gives_its_mids_in_order():
    shape = check_offer(await offer(slots=3), video_codec="VP8", max_slots=7)
    assert (shape.audio_mid, shape.video_mid) == ("0", "1")
    assert shape.slots == (("2", "3"), ("4", "5"), ("6", "7"))


async def test_no_mic_and_no_camera_is_accepted():
    shape = check_offer(await offer(slots=1), video_codec="VP8", max_slots=7)
    assert len(shape.slots) == 1


@pytest.mark.parametrize("bad", [None, 42, "", "   ", "hello", "v=0\r\nm=audio x\r\n"])
def test_garbage_is_bad_sdp(bad):
    assert code_of(bad) == "bad_sdp"


def test_oversize_is_bad_sdp():
    assert code_of("v=0\r\n" + "a=x\r\n" * (MAX_SDP_BYTES // 4)) == "bad_sdp"


async def test_too_many_slots():
    assert code_of(await offer(slots=3), max_slots=2) == "too_many_slots"


async def test_wrong_codec_is_codec_unsupported():
    sdp = await offer(slots=1)
    no_vp8 = "\r\n".join(line for line in sdp.split("\r\n") if "VP8" not in line)
    assert code_of(no_vp8) == "codec_unsupported"
    no_opus = "\r\n".join(line for line in sdp.split("\r\n") if "opus" not in line)
    assert code_of(no_opus) == "codec_unsupported"
    assert code_of(sdp.replace("VP8/90000", "H264/90000")) == "codec_unsupported"


async def test_wrong_directions_and_order_are_bad_sdp():
    sdp = await offer(slots=1)
    assert code_of(sdp.replace("a=recvonly", "a=sendrecv")) == "bad_sdp"
    assert code_of(sdp.replace("a=sendonly", "a=recvonly")) == "bad_sdp"
    # drop the last m-line: a slot without its video half
    cut = sdp[: sdp.rindex("m=video")]
    assert code_of(cut) == "bad_sdp"


async def test_missing_fingerprint_or_ice_is_bad_sdp():
    sdp = await offer(slots=1)
    assert code_of("\r\n".join(x for x in sdp.split("\r\n") if "fingerprint" not in x)) == "bad_sdp"
    assert code_of("\r\n".join(x for x in sdp.split("\r\n") if "ice-pwd" not in x)) == "bad_sdp"
