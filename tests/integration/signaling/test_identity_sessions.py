"""Participant ids are unique within a session only: two sessions that drew the same ids must not
see each other's view, sockets, slots or pictures.

The collision is forced (the id generator returns the same ids for both sessions); real
socket.io clients and real aiortc peers join both sessions at once."""

from __future__ import annotations

import itertools

import pytest

import rooms.service
from bench.bot import Bot
from rooms.service import ParticipantSpec
from server import ENGINE
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until

pytestmark = pytest.mark.slow

SAME_IDS = ["p-0000000a", "p-0000000b"]  # mediator, party: in both sessions
PARTY_CONSENTS = ("online_mediation", "session_rules")


async def command(sio, **cmd):
    return await sio.call("command", {"v": 1, "cmd": cmd}, namespace=NAMESPACE, timeout=5)


def two_sessions(running, monkeypatch):
    ids = itertools.cycle(SAME_IDS)
    monkeypatch.setattr(rooms.service, "new_participant_id", lambda: next(ids))
    sessions = []
    for title in ("Case ONE (confidential)", "Case TWO"):
        sessions.append(
            running.service.create_session(
                "mediation",
                actor="staff:test",
                title=title,
                case_number=None,
                participants=[
                    ParticipantSpec(name="Mediator", role="mediator"),
                    ParticipantSpec(name="Party", role="party", side="A"),
                ],
            )
        )
    assert [list(s.participants) for s in sessions] == [SAME_IDS, SAME_IDS]
    return sessions


async def join(running, state, role, bot_name, color):
    """Connect, offer real media as a bot named ``bot_name`` (its pictures carry that name)."""
    pid, token = running.token(state, role)
    sio, inbox = await running.client(token)
    bot = Bot(bot_name, slots=inbox["welcome"][0]["slots"], color=color, size=(160, 120))
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=20
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda msg: bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)
    await bot.wait_connected(15)
    return sio, inbox, bot


async def test_colliding_ids_stay_in_their_own_session(running, monkeypatch):
    one, two = two_sessions(running, monkeypatch)
    mid, aid = SAME_IDS
    m1, m1_inbox, m1bot = await join(running, one, "mediator", "one-mediator", (220, 40, 40))
    a1, a1_inbox, a1bot = await join(running, one, "party", "one-party", (40, 200, 60))
    m2, m2_inbox, m2bot = await join(running, two, "mediator", "two-mediator", (40, 80, 230))
    a2, a2_inbox, a2bot = await join(running, two, "party", "two-party", (200, 200, 40))
    bots = [m1bot, a1bot, m2bot, a2bot]
    try:
        # every socket stays up: nobody was "replaced" by the other session's namesake
        for sio, inbox in ((m1, m1_inbox), (a1, a1_inbox), (m2, m2_inbox), (a2, a2_inbox)):
            assert sio.connected
            assert not inbox["error"], inbox["error"]
        assert running.app[ENGINE].stats()["peers"] == 4
        for sio in (a1, a2):
            for topic in PARTY_CONSENTS:
                assert (await command(sio, type="record_consent", topic=topic, given=True))["ok"]
        assert (await command(m1, type="admit", participant=aid))["ok"]
        assert (await command(m2, type="admit", participant=aid))["ok"]
        assert (await command(a1, type="chat", text="secret of case one"))["ok"]

        pairs = [(m1bot, a1bot), (m2bot, a2bot)]
        await until(
            lambda: all(x.frames_from(y.name) > 10 for p in pairs for x, y in (p, p[::-1])),
            timeout=20,
        )
        # pictures: each bot sees its own session's counterpart only
        assert set(m1bot.received()) == {"one-party"} and set(a1bot.received()) == {"one-mediator"}
        assert set(m2bot.received()) == {"two-party"} and set(a2bot.received()) == {"two-mediator"}
        # slots: the server names the counterpart by its (session-local) id, one slot in use
        for bot, other in ((m1bot, aid), (a1bot, mid), (m2bot, aid), (a2bot, mid)):
            assert [p for p in bot.slot_participants.values() if p] == [other], (
                bot.slot_participants
            )

        # views: each mediator only ever saw its own session
        await until(lambda: any(v["chat"] for v in m1_inbox["state"]))
        for inbox, title in (
            (m1_inbox, "Case ONE (confidential)"),
            (a1_inbox, "Case ONE (confidential)"),
            (m2_inbox, "Case TWO"),
            (a2_inbox, "Case TWO"),
        ):
            views = [inbox["welcome"][0]["session"], *inbox["state"]]
            assert all(v["session"]["title"] == title for v in views), title
        assert not any(v["chat"] for v in m2_inbox["state"] + a2_inbox["state"])

        # leaving session two takes nothing from session one
        assert (await command(a2, type="leave"))["ok"]
        await until(lambda: not a2.connected)
        state_one = running.service.state(one.id)
        assert (
            state_one.participants[aid].space == "joint" and state_one.participants[aid].connected
        )
        before = m1bot.frames_from("one-party")
        await until(lambda: m1bot.frames_from("one-party") > before + 10, timeout=10)
        assert a1.connected and m1.connected and m2.connected
    finally:
        for b in bots:
            await b.close()
