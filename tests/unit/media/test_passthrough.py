"""Contract with aiortc's internals: the start-up check passes here and fails loudly on change."""

from __future__ import annotations

import fractions

import pytest
from aiortc import rtcrtpsender
from aiortc.jitterbuffer import JitterFrame

from media import passthrough


def test_installed_aiortc_has_every_hook_point():
    passthrough.check_aiortc()


def test_a_missing_hook_point_refuses_to_start(monkeypatch):
    monkeypatch.delattr(rtcrtpsender.RTCRtpSender, "_send_keyframe")
    with pytest.raises(passthrough.AiortcIncompatible, match="_send_keyframe"):
        passthrough.check_aiortc()


def test_an_untested_aiortc_version_refuses_to_start(monkeypatch):
    monkeypatch.setattr(passthrough.aiortc, "__version__", "2.0.0")
    with pytest.raises(passthrough.AiortcIncompatible, match="2.0.0"):
        passthrough.check_aiortc()


def test_frame_tap_turns_encoded_frames_into_packets_without_decoding():
    got = []
    tap = passthrough.FrameTap("video", got.append)
    key = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01" + b"\x00" * 8
    tap.put((None, JitterFrame(data=key, timestamp=9000)))
    tap.put((None, JitterFrame(data=b"\x11\x00\x00zz", timestamp=12000)))
    assert [p.is_keyframe for p in got] == [True, False]
    assert got[0].pts == 9000 and got[0].time_base == fractions.Fraction(1, 90000)
    assert bytes(got[0]) == key
    assert passthrough.vp8_size(key) == (640, 480)
    tap.put(None)
    assert tap.get() is None  # aiortc's (idle) worker thread ends when the receiver stops
