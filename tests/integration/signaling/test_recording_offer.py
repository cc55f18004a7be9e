"""No recorder on this node: nobody is asked to consent to a recording that cannot happen.

The mediation policy gates recording on consent, so ``Policy.consents_for`` lists "recording"
as optional; the namespace drops it unless it was built with ``recording_available=True``, and
tells the page (welcome ``recording``) whether to offer recording controls at all."""

from __future__ import annotations

import pytest

from signaling.namespace import ParleyNamespace

pytestmark = pytest.mark.slow


async def test_welcome_offers_no_recording_consent_without_a_recorder(running):
    state = running.mediation(parties=1)
    assert state.policy.consents_for("party")["optional"] == ["recording"]  # what rooms asks
    for role in ("party", "mediator"):
        _, token = running.token(state, role)
        _, inbox = await running.client(token)
        welcome = inbox["welcome"][0]
        assert "recording" not in welcome["consents"]["optional"], (role, welcome["consents"])
        assert welcome["consents"]["required"] == state.policy.consents_for(role)["required"]
        assert welcome["recording"] is False


def test_a_node_with_a_recorder_keeps_the_optional_consent():
    consents = {"required": ["online_mediation"], "optional": ["recording"]}
    kw = dict(signer=None, service=None, engine=None, conductor=None, slots_for=None)
    assert ParleyNamespace(**kw, recording_available=True)._consents(consents) == consents
    assert ParleyNamespace(**kw)._consents(consents)["optional"] == []
