"""Real aiortc peers join through socket.io; each publishes a distinct picture.

Routing is proven by content: every received frame carries its publisher's barcode, so a bot
knows *whose* picture arrived, and in which slot. The slot map the server sends must name the
same participant the pictures come from.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.bot import Bot
from server import ENGINE
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until

pytestmark = pytest.mark.slow

COLORS = [(220, 40, 40), (40, 200, 60), (40, 80, 230)]


async def join_bot(running, state, role, index, color, consents=()):
    pid, token = running.token(state, role, index)
    sio, inbox = await running.client(token)
    for topic in consents:
        reply = await sio.call(
            "command",
            {"v": 1, "cmd": {"type": "record_consent", "topic": topic, "given": True}},
            namespace=NAMESPACE,
            timeout=5,
        )
        assert reply["ok"], reply
    bot = Bot(pid, slots=inbox["welcome"][0]["slots"], color=color, tone_hz=None, size=(160, 120))
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=20
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda msg: bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)
    await bot.wait_connected(15)
    return pid, sio, bot


async def test_waiting_room_isolation_admit_and_slot_labels(running):
    state = running.mediation(parties=2)
    party_consents = ("online_mediation", "session_rules")
    mid, msio, mbot = await join_bot(running, state, "mediator", 0, COLORS[0])
    aid, asio, abot = await join_bot(running, state, "party", 0, COLORS[1], party_consents)
    bid, bsio, bbot = await join_bot(running, state, "party", 1, COLORS[2], party_consents)
    bots = [mbot, abot, bbot]
    try:
        await asyncio.sleep(1.5)
        # Parties wait: nobody receives anything yet.
        assert all(not b.received() for b in bots), [b.received() for b in bots]

        async def admit(pid):
            r = await msio.call(
                "command",
                {"v": 1, "cmd": {"type": "admit", "participant": pid}},
                namespace=NAMESPACE,
                timeout=5,
            )
            assert r["ok"], r

        await admit(aid)
        await until(lambda: mbot.frames_from(aid) > 10 and abot.frames_from(mid) > 10, timeout=15)
        assert bbot.received() == {}  # B still waits and gets nothing
        assert mbot.frames_from(bid) == 0 and abot.frames_from(bid) == 0

        await admit(bid)
        await until(
            lambda: all(
                b.frames_from(other) > 10
                for b in bots
                for other in (mid, aid, bid)
                if other != b.name
            ),
            timeout=20,
        )
        for b in bots:
            got = b.received()
            assert b.name not in got  # nobody receives their own picture back
            for publisher, info in got.items():
                assert info["out_of_order"] == 0
                # The slot the picture arrives in is the slot the server's map names it in.
                for slot in info["slots"]:
                    assert b.slot_participants[slot] == publisher

        # Back to the waiting room: A's picture stops for the others and A gets nothing.
        r = await msio.call(
            "command",
            {"v": 1, "cmd": {"type": "return_to_waiting", "participant": aid}},
            namespace=NAMESPACE,
            timeout=5,
        )
        assert r["ok"], r
        await asyncio.sleep(0.5)
        before = (
            mbot.frames_from(aid),
            bbot.frames_from(aid),
            abot.frames_from(mid),
            abot.frames_from(bid),
        )
        await asyncio.sleep(1.5)
        after = (
            mbot.frames_from(aid),
            bbot.frames_from(aid),
            abot.frames_from(mid),
            abot.frames_from(bid),
        )
        assert all(a - b <= 1 for a, b in zip(after, before, strict=True)), (before, after)
        assert mbot.frames_from(bid) > 0 and bbot.frames_from(mid) > 0
    finally:
        for b in bots:
            await b.close()


async def test_reconnect_replaces_connection_without_ghost(running):
    state = running.mediation(parties=1)
    mid, msio, mbot = await join_bot(running, state, "mediator", 0, COLORS[0])
    aid, asio, abot = await join_bot(
        running, state, "party", 0, COLORS[1], ("online_mediation", "session_rules")
    )
    r = await msio.call(
        "command",
        {"v": 1, "cmd": {"type": "admit", "participant": aid}},
        namespace=NAMESPACE,
        timeout=5,
    )
    assert r["ok"]
    await until(lambda: mbot.frames_from(aid) > 5, timeout=15)
    # The phone switches networks: a new socket + a new peer connection with the same token.
    _, a2sio, a2bot = await join_bot(running, state, "party", 0, COLORS[1])
    bots = [mbot, abot, a2bot]
    try:
        await until(lambda: a2bot.frames_from(mid) > 5, timeout=15)
        after = running.service.state(state.id).participants[aid]
        assert after.connected and after.space == "joint"  # same space, no re-admission
        stats = running.app[ENGINE].stats()
        assert stats.get("peers") == 2, stats  # the old connection is gone, no ghost
    finally:
        for b in bots:
            await b.close()


async def test_hosts_get_link_quality_and_parties_do_not(running):
    state = running.mediation(parties=1)
    got = {"m": [], "a": []}
    mid, msio, mbot = await join_bot(running, state, "mediator", 0, COLORS[0])
    aid, asio, abot = await join_bot(
        running, state, "party", 0, COLORS[1], ("online_mediation", "session_rules")
    )
    msio.on("quality", lambda q: got["m"].append(q), namespace=NAMESPACE)
    asio.on("quality", lambda q: got["a"].append(q), namespace=NAMESPACE)
    try:
        await until(lambda: got["m"] and {mid, aid} <= set(got["m"][-1]), timeout=8)
        latest = got["m"][-1]
        assert latest[aid]["state"] == "connected" and latest[mid]["state"] == "connected"
        assert got["a"] == []
    finally:
        await mbot.close()
        await abot.close()
