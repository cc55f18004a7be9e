"""Consent withdrawn during a recording, through a real server and socket.io: the party's
``record_consent given: false`` pauses the recording (the policy in rooms decides), nobody is
ejected, the mediator's page is told who withdrew, the ledger has the withdrawal and the gap;
the question itself and each answer are ledger events with their actor. Bad input: a client
sending the server-only ``ask_recording``, a party asking, a withdrawal twice, one when nothing
is recorded."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import running, until  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


async def _ack(sio, event, payload):
    return await sio.call(event, payload, namespace=NAMESPACE, timeout=5)


def _consent(given: bool, topic: str = "recording") -> dict:
    return {"v": 1, "cmd": {"type": "record_consent", "topic": topic, "given": given}}


def _types(run, state, since: int) -> list[tuple[str, str, dict]]:
    return [(e.type, e.actor, e.data) for e in run.service.events(state.id) if e.seq > since]


async def test_a_withdrawal_pauses_the_recording_and_the_mediator_sees_who(running):  # noqa: F811
    state = running.mediation(parties=1)
    med_id, med_token = running.token(state, "mediator")
    party_id, party_token = running.token(state, "party")
    med, med_inbox = await running.client(med_token)
    party, party_inbox = await running.client(party_token)
    system = running.service
    # media up for both (what a real offer's answer does), the party admitted to the joint room
    for pid in (med_id, party_id):
        system.execute(state.id, "system", decode_command({"type": "connect", "participant": pid}))
    for topic in ("online_mediation", "session_rules"):
        assert (await _ack(party, "command", _consent(True, topic)))["ok"]
    admit = {"v": 1, "cmd": {"type": "admit", "participant": party_id}}
    assert (await _ack(med, "command", admit))["ok"]

    # bad input first: the server-only command from a client, a party asking, a withdrawal
    # while nothing is recorded (only an answer: no withdrawal, no pause)
    r = await _ack(party, "command", {"v": 1, "cmd": {"type": "ask_recording", "action": "ask"}})
    assert r["error"]["code"] == "forbidden", r
    r = await _ack(party, "recording", {"v": 1, "action": "cancel"})
    assert r["error"]["code"] == "forbidden", r
    seq = state.seq
    assert (await _ack(party, "command", _consent(False)))["ok"]
    assert [t for t, _, _ in _types(running, state, seq)] == ["participant.consent"]

    # the question and the answers, in the ledger with their actors
    seq = state.seq
    assert (await _ack(med, "command", _consent(True)))["ok"]
    asked = await _ack(med, "recording", {"v": 1, "action": "ask"})
    assert asked["ok"] and asked["missing"] == [party_id], asked
    assert (await _ack(party, "command", _consent(True)))["ok"]
    ask_id = asked["ask"]["id"]
    assert _types(running, state, seq) == [
        (
            "participant.consent",
            med_id,
            {"participant": med_id, "topic": "recording", "given": True},
        ),
        ("recording.asked", med_id, {"ask": ask_id}),
        (
            "participant.consent",
            party_id,
            {"participant": party_id, "topic": "recording", "given": True, "ask": ask_id},
        ),
    ]
    assert (await _ack(med, "command", {"v": 1, "cmd": {"type": "start_recording"}}))["ok"]

    # the withdrawal: paused for everyone, the party stays, the mediator's page names them
    seq = state.seq
    r = await _ack(party, "command", _consent(False))
    assert r["ok"], r
    assert _types(running, state, seq) == [
        (
            "participant.consent",
            party_id,
            {"participant": party_id, "topic": "recording", "given": False},
        ),
        ("recording.consent_withdrawn", party_id, {"participant": party_id, "effect": "pause"}),
        ("recording.paused", party_id, {"reason": "consent_withdrawn", "participants": [party_id]}),
    ]
    view = await until(
        lambda: next(
            (v for v in reversed(med_inbox["state"]) if v["session"]["recording_paused"]), None
        )
    )
    assert [w["participant"] for w in view["recording_withdrawn"]] == [party_id]
    assert view["session"]["recording"] is True
    party_view = await until(
        lambda: next(
            (v for v in reversed(party_inbox["state"]) if v["session"]["recording_paused"]), None
        )
    )
    assert party_view["space"] == "joint" and "recording_withdrawn" not in party_view
    assert state.participants[party_id].space == "joint"

    # twice: refused, the ledger does not move
    seq = state.seq
    r = await _ack(party, "command", _consent(False))
    assert r["error"]["code"] == "conflict", r
    assert state.seq == seq

    # consent again: resumed, with the gap's length
    assert (await _ack(party, "command", _consent(True)))["ok"]
    resumed = _types(running, state, seq)[-1]
    assert resumed[0] == "recording.resumed" and resumed[2]["seconds"] >= 0
    assert resumed[2]["paused_at"] <= running.service.events(state.id)[-1].ts
    await until(lambda: med_inbox["state"][-1]["recording_withdrawn"] == [])
    assert not med_inbox["state"][-1]["session"]["recording_paused"]
