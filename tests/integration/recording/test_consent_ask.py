"""The mediator's recording question (socket.io ``recording``) through a real server: who may ask,
the asker's own consent first, every page told, a reload still told, cleared by the start."""

from __future__ import annotations

import pytest

from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import running, until  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def _listen(sio, inbox):
    inbox["recording_ask"] = []
    sio.on(
        "recording_ask", lambda data=None: inbox["recording_ask"].append(data), namespace=NAMESPACE
    )


async def _ack(sio, event, payload):
    return await sio.call(event, payload, namespace=NAMESPACE, timeout=5)


async def test_the_mediator_asks_after_consenting_and_the_start_clears_the_question(running):  # noqa: F811
    state = running.mediation(parties=1)
    _, med_token = running.token(state, "mediator")
    _, party_token = running.token(state, "party")
    med, med_inbox = await running.client(med_token)
    party, party_inbox = await running.client(party_token)
    _listen(party, party_inbox)
    _listen(med, med_inbox)

    # refusals: malformed, a party asking, the mediator before their own consent
    for bad in ({"v": 1, "action": "start"}, {"v": 1, "action": "ask", "x": 1}, {"v": 1}, "ask"):
        r = await _ack(med, "recording", bad)
        assert r["ok"] is False and r["error"]["code"] == "invalid_message", (bad, r)
    r = await _ack(party, "recording", {"v": 1, "action": "ask"})
    assert r["error"]["code"] == "forbidden", r
    r = await _ack(med, "recording", {"v": 1, "action": "ask"})
    assert r["error"]["code"] == "conflict" and "own consent" in r["error"]["message"], r
    assert party_inbox["recording_ask"] == []

    consent = {"type": "record_consent", "topic": "recording", "given": True}
    assert (await _ack(med, "command", {"v": 1, "cmd": consent}))["ok"]
    r = await _ack(med, "recording", {"v": 1, "action": "ask"})
    assert r["ok"] and r["ask"]["by"] == "Mediator M", r
    ask = r["ask"]
    await until(lambda: party_inbox["recording_ask"])
    assert party_inbox["recording_ask"][-1] == {"v": 1, "ask": ask}

    # a page that connects now (a reload) is told in its welcome
    again, again_inbox = await running.client(party_token)
    assert again_inbox["welcome"][0]["recording_ask"] == ask
    _listen(again, again_inbox)

    # the withdrawal reaches every page; asking again makes a new question
    assert (await _ack(med, "recording", {"v": 1, "action": "cancel"}))["ok"]
    await until(
        lambda: again_inbox["recording_ask"] and again_inbox["recording_ask"][-1]["ask"] is None
    )
    r = await _ack(med, "recording", {"v": 1, "action": "ask"})
    assert r["ask"]["id"] > ask["id"]

    # nobody is in the joint room with media yet, so the start passes and clears the question
    r = await _ack(med, "command", {"v": 1, "cmd": {"type": "start_recording"}})
    assert r["ok"], r
    await until(lambda: again_inbox["recording_ask"][-1]["ask"] is None)
    r = await _ack(med, "recording", {"v": 1, "action": "ask"})
    assert r["error"]["code"] == "conflict" and "already on" in r["error"]["message"]
