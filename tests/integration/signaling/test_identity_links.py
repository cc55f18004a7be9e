"""One invitation link, one live connection; a revoked, removed or ended link is cut at once,
on the socket, in media and over HTTP alike."""

from __future__ import annotations

import asyncio

import aiohttp
import socketio

from bench.bot import Bot
from server import ENGINE
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until

PARTY_CONSENTS = ("online_mediation", "session_rules")


async def call(sio, event, payload):
    return await sio.call(event, payload, namespace=NAMESPACE, timeout=5)


async def command(sio, **cmd):
    return await call(sio, "command", {"v": 1, "cmd": cmd})


async def media_up(sio, pid: str, inbox) -> Bot:
    """A real aiortc peer for the participant, connected through the socket's offer."""
    bot = Bot(pid, slots=inbox["welcome"][0]["slots"], color=None, size=(160, 120))
    reply = await call(sio, "offer", {"v": 1, "sdp": await bot.create_offer()})
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    await bot.wait_connected(15)
    return bot


async def refused_or_cut(sio, code: str, **cmd) -> None:
    """Send a command from a device whose link was just cut: either the server answers ``code``
    or the socket is already closed and the message is never served (the kick won the race);
    it must never be accepted."""
    replies: list = []
    try:
        await sio.emit(
            "command",
            {"v": 1, "cmd": cmd},
            namespace=NAMESPACE,
            callback=lambda r: replies.append(r),
        )
    except socketio.exceptions.BadNamespaceError:
        return  # the client already saw the cut: nothing was sent
    await until(lambda: replies or not sio.connected)
    if replies:
        assert replies[0]["ok"] is False and replies[0]["error"]["code"] == code, replies


async def test_concurrent_connects_with_one_token_leave_exactly_one_live(running):
    state = running.mediation()
    aid, tok = running.token(state, "party")

    async def attempt():
        sio = socketio.AsyncClient(reconnection=False)
        running.clients.append(sio)
        try:
            await sio.connect(
                running.url,
                namespaces=[NAMESPACE],
                auth={"token": tok},
                transports=["websocket"],
                wait_timeout=5,
            )
        except socketio.exceptions.ConnectionError:
            pass  # refused: a newer connection of the same link won the race
        return sio

    clients = await asyncio.gather(*(attempt() for _ in range(20)))
    await until(lambda: sum(c.connected for c in clients) == 1, timeout=10)
    live = next(c for c in clients if c.connected)
    # the survivor is served; the others cannot act for the participant
    assert await call(live, "media", {"v": 1, "video_paused": True}) == {"ok": True}
    consent = await command(live, type="record_consent", topic="session_rules", given=True)
    assert consent["ok"], consent
    assert sum(c.connected for c in clients) == 1


async def test_reissued_link_cuts_the_old_device_at_once(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    msio, _ = await running.client(tok_m)
    asio, a_inbox = await running.client(tok_a)
    bot = await media_up(asio, aid, a_inbox)
    try:
        for topic in PARTY_CONSENTS:
            assert (await command(asio, type="record_consent", topic=topic, given=True))["ok"]
        admitted = await command(msio, type="admit", participant=aid)
        assert admitted["ok"], admitted
        engine = running.app[ENGINE]
        assert engine.stats()["peers"] == 1

        assert (await command(msio, type="reissue_invitation", participant=aid))["ok"]
        # the old device's very next message is refused: no window while the kick is in flight
        await refused_or_cut(asio, "token_revoked", type="chat", text="sent with the revoked link")
        await until(lambda: not asio.connected)
        assert any(e and e.get("code") == "token_revoked" for e in a_inbox["error"])
        await until(lambda: engine.stats()["peers"] == 0)
        after = running.service.state(state.id)
        assert not any(
            c["text"] == "sent with the revoked link" for c in after.chat.get("joint", [])
        )
        assert not after.participants[aid].connected
    finally:
        await bot.close()

    # the old link stays refused; the new one works and lands where the party was
    seen: list = []
    old = socketio.AsyncClient(reconnection=False)
    old.on("connect_error", lambda data=None: seen.append(data), namespace=NAMESPACE)
    try:
        await old.connect(
            running.url, namespaces=[NAMESPACE], auth={"token": tok_a}, transports=["websocket"]
        )
    except socketio.exceptions.ConnectionError:
        pass
    assert not old.connected and seen[0]["data"]["code"] == "token_revoked"
    new_tok = running.signer.issue(state.id, aid, "party", ttl=60, gen=1)
    fresh, fresh_inbox = await running.client(new_tok)
    assert fresh_inbox["welcome"][0]["session"]["space"] == "joint"
    assert (await command(fresh, type="chat", text="hello again"))["ok"]


async def test_removed_participants_socket_and_media_are_closed(running):
    state = running.mediation(parties=1)
    _, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    msio, _ = await running.client(tok_m)
    asio, a_inbox = await running.client(tok_a)
    bot = await media_up(asio, aid, a_inbox)
    try:
        engine = running.app[ENGINE]
        assert engine.stats()["peers"] == 1
        assert (await command(msio, type="remove", participant=aid, reason="test"))["ok"]
        await refused_or_cut(asio, "participant_gone", type="chat", text="after removal")
        await until(lambda: not asio.connected and engine.stats()["peers"] == 0)
        chat = running.service.state(state.id).chat
        assert not any(c["text"] == "after removal" for msgs in chat.values() for c in msgs)
    finally:
        await bot.close()


async def test_http_routes_apply_the_same_liveness_checks_as_the_socket(running):
    state = running.mediation(parties=3)
    mid, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party", 0)
    b, tok_b = running.token(state, "party", 1)
    c, tok_c = running.token(state, "party", 2)
    msio, _ = await running.client(tok_m)
    bsio, _ = await running.client(tok_b)
    wrong_role = running.signer.issue(state.id, c, "mediator", ttl=60)

    base = f"{running.url}/api/sessions/{state.id}"

    async def pdf(http, token) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(base + "/agreement.pdf", headers=headers) as r:
            body = await r.json()
            return r.status, body["error"]["code"]

    async with aiohttp.ClientSession() as http:
        # a live participant reaches the route (nothing frozen yet)
        assert await pdf(http, tok_a) == (404, "not_found")
        assert (await pdf(http, wrong_role))[0] == 403
        assert (await command(msio, type="remove", participant=a, reason="test"))["ok"]
        assert (await pdf(http, tok_a))[0] == 403
        assert (await command(bsio, type="leave"))["ok"]
        assert (await pdf(http, tok_b))[0] == 403
        assert (await command(msio, type="reissue_invitation", participant=c))["ok"]
        assert (await pdf(http, tok_c))[0] == 403
        assert await pdf(http, tok_m) == (404, "not_found")
