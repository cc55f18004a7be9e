"""A whole mediation through signaling with real aiortc peers sending distinct pictures.

Side A (party + counsel) moves to a caucus: from the moment the command is acknowledged,
side B receives nothing more from side A and side A receives nothing from the joint room;
the mediator is in one space at a time; closing the caucus brings everyone back.
"""

from __future__ import annotations

import asyncio

import pytest
import socketio

from rooms.commands import decode_command
from rooms.service import ParticipantSpec
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until
from tests.integration.signaling.test_routing import join_bot

pytestmark = pytest.mark.slow
CONSENTS = ("online_mediation", "session_rules")


async def cmd(sio, **command):
    reply = await sio.call("command", {"v": 1, "cmd": command}, namespace=NAMESPACE, timeout=5)
    assert reply["ok"], reply
    return reply


def snapshot(bots, ids):
    return {(b.name, i): b.frames_from(i) for b in bots for i in ids if i != b.name}


async def test_caucus_isolation_during_and_after_the_move(running):
    state = running.service.create_session(
        "mediation",
        actor="staff:test",
        title="Caucus",
        case_number="C-1",
        participants=[
            ParticipantSpec("Mediator", "mediator"),
            ParticipantSpec("Party A", "party", "A"),
            ParticipantSpec("Counsel A", "counsel", "A"),
            ParticipantSpec("Party B", "party", "B"),
        ],
    )
    m, msio, mbot = await join_bot(running, state, "mediator", 0, (200, 30, 30))
    a, asio, abot = await join_bot(running, state, "party", 0, (30, 200, 30), CONSENTS)
    ca, casio, cabot = await join_bot(
        running, state, "counsel", 0, (200, 200, 30), ("session_rules",)
    )
    b, bsio, bbot = await join_bot(running, state, "party", 1, (30, 30, 200), CONSENTS)
    bots = [mbot, abot, cabot, bbot]
    ids = [m, a, ca, b]
    try:
        for pid in (a, ca, b):
            await cmd(msio, type="admit", participant=pid)
        await until(
            lambda: all(bt.frames_from(o) > 5 for bt in bots for o in ids if o != bt.name), 20
        )

        await cmd(msio, type="create_caucus", caucus="a", seconds=600)
        await cmd(msio, type="move_to_caucus", caucus="a", side="A")
        at_ack = snapshot(bots, ids)
        assert (
            running.service.state(state.id).participants[ca].space == "caucus:a"
        )  # counsel went too
        await asyncio.sleep(2.0)
        later = snapshot(bots, ids)
        crossing = [(m, a), (m, ca), (b, a), (b, ca), (a, m), (a, b), (ca, m), (ca, b)]
        for pair in crossing:  # at most a frame already in flight when the switch happened
            assert later[pair] - at_ack[pair] <= 1, (pair, at_ack[pair], later[pair])
        assert later[(a, ca)] - at_ack[(a, ca)] > 10  # inside the caucus they see each other
        assert later[(b, m)] - at_ack[(b, m)] > 10  # the joint room goes on

        # The mediator visits the caucus: one space at a time, so B is now alone.
        await cmd(msio, type="visit_caucus", caucus="a")
        await until(lambda: mbot.frames_from(a) > later[(m, a)] + 10, 15)
        at_visit = snapshot(bots, ids)
        await asyncio.sleep(1.5)
        after_visit = snapshot(bots, ids)
        assert after_visit[(b, m)] - at_visit[(b, m)] <= 1
        assert after_visit[(m, b)] - at_visit[(m, b)] <= 1
        assert after_visit[(b, a)] == later[(b, a)] or after_visit[(b, a)] - later[(b, a)] <= 1

        # Party B's view names nobody from the caucus; party A's view shows its caucus timer.
        view_b = running.service.state(state.id).view_for(b)
        assert {p["id"] for p in view_b["participants"]} == {b}
        view_a = running.service.state(state.id).view_for(a)
        assert view_a["caucuses"] and view_a["caucuses"][0]["deadline"]

        await cmd(msio, type="close_caucus", caucus="a")
        spaces = {p.id: p.space for p in running.service.state(state.id).participants.values()}
        assert set(spaces.values()) == {"joint"}, spaces
        await until(lambda: bbot.frames_from(a) > after_visit[(b, a)] + 10, 15)
    finally:
        for bt in bots:
            await bt.close()


async def test_chat_stays_in_its_space_and_ask_for_mediator(running):
    state = running.mediation(parties=2)
    m, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party", 0)
    b, tok_b = running.token(state, "party", 1)
    msio, _ = await running.client(tok_m)
    asio, a_inbox = await running.client(tok_a)
    bsio, b_inbox = await running.client(tok_b)
    for sio in (asio, bsio):
        for topic in CONSENTS:
            await cmd(sio, type="record_consent", topic=topic, given=True)
    for pid in (m, a, b):  # media is not needed here: record the connections as the server would
        running.service.execute(
            state.id, "system", decode_command({"type": "connect", "participant": pid})
        )
    await cmd(asio, type="ask_for_mediator")
    assert running.service.state(state.id).participants[a].asked_at
    await cmd(msio, type="admit", participant=a)
    await cmd(msio, type="admit", participant=b)
    await cmd(msio, type="create_caucus", caucus="b")
    await cmd(msio, type="move_to_caucus", caucus="b", participants=[b])
    await cmd(bsio, type="chat", text="只给调解员看 private to the caucus")
    await cmd(asio, type="chat", text="joint room message")
    await until(lambda: a_inbox["state"] and a_inbox["state"][-1]["chat"])
    await until(lambda: b_inbox["state"] and b_inbox["state"][-1]["chat"])
    assert [c["text"] for c in a_inbox["state"][-1]["chat"]] == ["joint room message"]
    assert [c["text"] for c in b_inbox["state"][-1]["chat"]] == [
        "只给调解员看 private to the caucus"
    ]
    for view in a_inbox["state"]:
        assert all("private" not in c["text"] for c in view["chat"])


async def test_removed_participant_and_ended_session_are_disconnected(running):
    state = running.mediation(parties=2)
    m, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party", 0)
    b, tok_b = running.token(state, "party", 1)
    msio, m_inbox = await running.client(tok_m)
    asio, a_inbox = await running.client(tok_a)
    bsio, b_inbox = await running.client(tok_b)
    await cmd(msio, type="remove", participant=a, reason="disruptive")
    await until(lambda: not asio.connected)
    assert {"code": "removed", "message": "session removed"} in a_inbox["error"]
    assert bsio.connected and msio.connected
    # A removed participant cannot come back with the same link.
    with pytest.raises(socketio.exceptions.ConnectionError):
        await running.client(tok_a)
    await cmd(msio, type="end_session", reason="agreement reached")
    await until(lambda: not bsio.connected and not msio.connected)
    assert any(e and e.get("code") == "ended" for e in b_inbox["error"])
