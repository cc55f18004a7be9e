"""Recording is offered where a recorder runs, and its consent is asked in the call, not on arrival.

The mediation policy gates recording on consent, so ``Policy.consents_for`` lists "recording"
as optional; the namespace keeps it off the arrival screen (the page asks it in the call, when
the mediator asks or on entering a room being recorded) and tells the page (welcome
``recording``) whether to offer recording controls at all: ``server.py`` runs a recorder, so yes."""

from __future__ import annotations

import pytest

from signaling.namespace import ParleyNamespace

pytestmark = pytest.mark.slow


async def test_welcome_offers_recording_but_not_on_the_arrival_screen(running):
    state = running.mediation(parties=1)
    assert state.policy.consents_for("party")["optional"] == ["recording"]  # what rooms asks
    for role in ("party", "mediator"):
        _, token = running.token(state, role)
        _, inbox = await running.client(token)
        welcome = inbox["welcome"][0]
        assert "recording" not in welcome["consents"]["optional"], (role, welcome["consents"])
        assert welcome["consents"]["required"] == state.policy.consents_for(role)["required"]
        assert welcome["recording"] is True
        assert welcome["recording_ask"] is None


def test_the_arrival_screen_never_asks_for_recording():
    consents = {"required": ["online_mediation"], "optional": ["recording"]}
    kw = dict(signer=None, service=None, engine=None, conductor=None, slots_for=None)
    for available in (True, False):
        got = ParleyNamespace(**kw, recording_available=available)._consents(consents)
        assert got == {"required": ["online_mediation"], "optional": []}
