import pytest

from signaling import messages as m
from signaling.ratelimit import RateLimiter

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"


def test_offer_decodes():
    assert m.decode(m.Offer, {"v": 1, "sdp": SDP}).sdp == SDP


@pytest.mark.parametrize(
    "payload,code",
    [
        ("not an object", "invalid_message"),
        ([1, 2], "invalid_message"),
        ({"sdp": SDP}, "invalid_message"),  # missing version
        ({"v": 2, "sdp": SDP}, "invalid_message"),  # future version
        ({"v": "1", "sdp": SDP}, "invalid_message"),  # wrong type
        ({"v": 1, "sdp": 5}, "invalid_message"),
        ({"v": 1, "sdp": "short"}, "invalid_message"),
        ({"v": 1, "sdp": SDP, "extra": 1}, "invalid_message"),  # unknown field
        ({"v": 1, "sdp": "x" * (m.MAX_SDP_BYTES + 10)}, "invalid_message"),
        ({"v": 1, "sdp": "x" * (2 * m.MAX_SDP_BYTES)}, "too_large"),
    ],
)
def test_bad_offers_are_refused_with_codes(payload, code):
    with pytest.raises(m.BadMessage) as exc:
        m.decode(m.Offer, payload)
    assert exc.value.code == code


def test_command_envelope_limits_cid_charset():
    with pytest.raises(m.BadMessage):
        m.decode(m.CommandEnvelope, {"v": 1, "cmd": {}, "cid": "has space"})
    env = m.decode(m.CommandEnvelope, {"v": 1, "cmd": {"type": "admit"}, "cid": "p-1.abc.1"})
    assert env.cid == "p-1.abc.1"


def test_media_preference_needs_a_boolean():
    with pytest.raises(m.BadMessage):
        m.decode(m.MediaPreference, {"v": 1, "video_paused": "yes"})


def test_rate_limiter_refuses_bursts_and_recovers():
    t = [0.0]
    rl = RateLimiter(rate=10, burst=5, clock=lambda: t[0])
    assert all(rl.allow() for _ in range(5))
    assert not rl.allow()
    t[0] += 0.25
    assert rl.allow() and rl.allow()
    assert rl.refused == 1
