"""Notices to the family: both languages, the booking's first; a failing mail server never
undoes a booking; no contact, no notice."""

from __future__ import annotations

import datetime as dt

import pytest

from visits import notices
from visits.reservations import Booking


def booking(**kw):
    base = dict(
        id=7,
        inmate=1,
        bureau_terminal="bx-1",
        facility_terminal="pa-1",
        start=dt.datetime(2030, 1, 8, 9),
        minutes=30,
        status="requested",
        exception_reason="",
        exception_by="",
        contact="f@example.org",
        lang="zh",
        requested_by="staff:op",
        reason_code="",
        visitors=(1,),
    )
    return Booking(**{**base, **kw})


class Sink:
    def __init__(self, fail=False):
        self.sent, self.fail = [], fail

    async def send(self, to, subject, text):
        if self.fail:
            raise OSError("smtp down")
        self.sent.append((to, subject, text))


@pytest.mark.parametrize("event", sorted(notices.TEMPLATES))
def test_every_notice_is_bilingual(event):
    subject, text = notices.compose(event, booking(reason_code="discipline"), "X 司法局")
    zh, en = text.strip().split("\n\n")
    assert "7" in zh and "7" in en and any("\u4e00" <= c <= "\u9fff" for c in subject)
    assert any("\u4e00" <= c <= "\u9fff" for c in zh)
    assert en.replace("X 司法局", "").isascii() and "isit" in en
    assert "{" not in text


def test_language_order_and_reason_labels():
    _, zh_first = notices.compose("rejected", booking(reason_code="security"), "B")
    _, en_first = notices.compose("rejected", booking(reason_code="security", lang="en"), "B")
    assert zh_first.startswith("会见预约") and en_first.startswith("Visit request")
    assert "安全原因" in zh_first and "security" in zh_first


async def test_notify_sends_skips_and_survives_failure():
    sink = Sink()
    assert await notices.notify(sink, "approved", booking(), "B")
    assert sink.sent[0][0] == "f@example.org"
    assert not await notices.notify(sink, "approved", booking(contact=""), "B")
    assert not await notices.notify(None, "approved", booking(), "B")
    assert not await notices.notify(Sink(fail=True), "approved", booking(), "B")
