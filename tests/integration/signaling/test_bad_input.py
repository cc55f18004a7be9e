"""Bad input at the socket.io door: each case gets a clear code and everyone else keeps going."""

from __future__ import annotations

import json

import aiohttp
import pytest
import socketio

from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until


async def refused(running, auth) -> dict:
    """Connect and expect a refusal; return the data the server attached to it."""
    sio = socketio.AsyncClient(reconnection=False)
    seen: list = []
    sio.on("connect_error", lambda data=None: seen.append(data), namespace=NAMESPACE)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            running.url, namespaces=[NAMESPACE], auth=auth, transports=["websocket"], wait_timeout=5
        )
    assert seen, "the server refused without saying why"
    return (seen[0] or {}).get("data") or {}


async def test_connection_refusals_have_codes(running):
    state = running.mediation()
    pid, good = running.token(state, "party")
    other = running.mediation()
    assert (await refused(running, None)).get("code") == "token_missing"
    assert (await refused(running, {"token": "garbage"})).get("code") == "token_invalid"
    assert (await refused(running, {"token": good[:-3] + "AAA"})).get("code") == "token_invalid"
    expired = running.signer.issue(state.id, pid, "party", ttl=-1)
    assert (await refused(running, {"token": expired})).get("code") == "token_expired"
    foreign = running.signer.issue(other.id, pid, "party", ttl=60)  # participant of another session
    assert (await refused(running, {"token": foreign})).get("code") == "participant_not_found"
    unknown = running.signer.issue("s-nope", pid, "party", ttl=60)
    assert (await refused(running, {"token": unknown})).get("code") == "session_not_found"


async def test_bad_events_get_errors_and_others_keep_working(running):
    state = running.mediation()
    _, tok_m = running.token(state, "mediator")
    _, tok_a = running.token(state, "party")
    bad, _ = await running.client(tok_a)
    good, good_inbox = await running.client(tok_m)

    async def ask(event, payload):
        return await bad.call(event, payload, namespace=NAMESPACE, timeout=5)

    assert (await ask("offer", {"v": 1, "sdp": "garbage sdp that is not sdp"}))["error"][
        "code"
    ] == "bad_sdp"
    assert (await ask("offer", {"v": 1, "sdp": "x" * 40000}))["error"]["code"] == "too_large"
    assert (await ask("offer", {"v": 1}))["error"]["code"] == "invalid_message"
    assert (await ask("offer", {"v": 1, "sdp": 12}))["error"]["code"] == "invalid_message"
    assert (await ask("offer", "just a string"))["error"]["code"] == "invalid_message"
    assert (await ask("no_such_event", {}))["error"]["code"] == "unknown_event"
    assert (await ask("command", {"v": 1, "cmd": {"type": "no_such_command"}}))["error"][
        "code"
    ] == "invalid"
    assert (await ask("command", {"v": 1, "cmd": {"type": "admit", "participant": 5}}))["error"][
        "code"
    ] == "invalid"
    assert (await ask("media", {"v": 1, "video_paused": "yes"}))["error"][
        "code"
    ] == "invalid_message"

    # Commands only the server issues (after doing the work) are refused from a client.
    forged = {"type": "sign_agreement", "events": [{"type": "signature.embedded", "data": {}}]}
    assert (await ask("command", {"v": 1, "cmd": forged}))["error"]["code"] == "forbidden"
    fake_doc = {
        "type": "share_document",
        "document": "d-" + "0" * 16,
        "name": "x.pdf",
        "mime": "application/pdf",
        "size": 1,
        "sha256": "0" * 64,
    }
    assert (await ask("command", {"v": 1, "cmd": fake_doc}))["error"]["code"] == "forbidden"

    # A party may not admit anyone: forbidden, and the ledger does not move.
    seq = running.service.state(state.id).seq
    reply = await ask(
        "command", {"v": 1, "cmd": {"type": "admit", "participant": next(iter(state.participants))}}
    )
    assert reply["error"]["code"] == "forbidden"
    assert running.service.state(state.id).seq == seq

    # The well-behaved client is still served.
    assert good.connected and bad.connected
    reply = await good.call(
        "media", {"v": 1, "video_paused": False}, namespace=NAMESPACE, timeout=5
    )
    assert reply == {"ok": True}

    # Past the transport's 64 KiB frame limit the server closes that connection, and only that.
    await bad.emit("offer", {"v": 1, "sdp": "x" * 70000}, namespace=NAMESPACE)
    await until(lambda: not bad.connected)
    reply = await good.call("media", {"v": 1, "video_paused": True}, namespace=NAMESPACE, timeout=5)
    assert reply == {"ok": True}


async def test_flooding_client_is_rate_limited(running):
    state = running.mediation()
    _, tok = running.token(state, "party")
    sio, _ = await running.client(tok)
    codes = []
    for _ in range(60):
        r = await sio.call("media", {"v": 1, "video_paused": True}, namespace=NAMESPACE, timeout=5)
        codes.append(r.get("ok") or r["error"]["code"])
    assert "rate_limited" in codes
    assert codes[0] is True


async def test_event_before_authentication_is_ignored_and_server_survives(running):
    """Raw engine.io: send a socket.io EVENT on a namespace that never connected."""
    state = running.mediation()
    _, tok = running.token(state, "party")
    ws_url = running.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        opening = await ws.receive_str()
        assert opening.startswith("0")
        await ws.send_str("42" + NAMESPACE + "," + json.dumps(["offer", {"v": 1, "sdp": "x" * 20}]))
        await ws.send_str("42" + NAMESPACE + ",17" + json.dumps(["command", {"v": 1}]))
        await ws.send_str("this is not engine.io")
    seq = running.service.state(state.id).seq
    sio, inbox = await running.client(tok)
    assert inbox["welcome"][0]["participant"]
    assert running.service.state(state.id).seq == seq  # nothing was applied by the raw frames
    r = await sio.call("media", {"v": 1, "video_paused": False}, namespace=NAMESPACE, timeout=5)
    assert r == {"ok": True}


async def test_second_window_replaces_the_first(running):
    state = running.mediation()
    _, tok = running.token(state, "party")
    first, first_inbox = await running.client(tok)
    second, _ = await running.client(tok)
    await until(lambda: first_inbox["error"] or not first.connected)
    assert (
        any(e and e.get("code") == "replaced" for e in first_inbox["error"]) or not first.connected
    )
    assert second.connected
    await until(lambda: not first.connected)


async def test_http_routes(running):
    async with aiohttp.ClientSession() as http:
        async with http.get(running.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(running.url + "/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body["checks"]["ledger"] and body["checks"]["media"]
            assert body["checks"]["recorder"]["ok"]  # tests/integration/recording/test_ready.py
        async with http.get(running.url + "/metrics") as r:
            assert "parley_sessions" in await r.text()
        async with http.get(running.url + "/j/bad.token") as r:
            assert r.status == 403 and "token_invalid" in await r.text()
        state = running.mediation()
        pid = next(iter(state.participants))
        expired = running.signer.issue(state.id, pid, "mediator", ttl=-5)
        async with http.get(running.url + "/j/" + expired) as r:
            assert r.status == 410
        _, tok = running.token(state, "party")
        async with http.get(running.url + "/j/" + tok) as r:
            assert r.status == 200 and 'id="btn-join"' in await r.text()
            assert r.headers["Referrer-Policy"] == "no-referrer"


async def test_invitation_leave_and_agreement_downloads_refuse_bad_input(running):
    state = running.mediation()
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    msio, _ = await running.client(tok_m)
    asio, _ = await running.client(tok_a)

    async def ask(sio, event, payload):
        return await sio.call(event, payload, namespace=NAMESPACE, timeout=5)

    # invitation: hosts only, a real participant, a well-formed id
    assert (await ask(asio, "invitation", {"v": 1, "participant": mid}))["error"][
        "code"
    ] == "forbidden"
    assert (await ask(msio, "invitation", {"v": 1, "participant": "p-00000000"}))["error"][
        "code"
    ] == "not_found"
    assert (await ask(msio, "invitation", {"v": 1, "participant": "../../x"}))["error"][
        "code"
    ] == "invalid_message"
    reply = await ask(msio, "invitation", {"v": 1, "participant": aid})
    assert reply["ok"] and running.signer.verify(reply["path"].rsplit("/", 1)[1]).participant == aid
    # leave: typed payload only
    assert (await ask(asio, "leave", {"v": 1, "reason": 5}))["error"]["code"] == "invalid_message"
    assert (await ask(asio, "leave", {"v": 1, "why": "x"}))["error"]["code"] == "invalid_message"
    # agreement messages: unknown actions and fields are refused before anything runs
    assert (await ask(msio, "agreement", {"v": 1, "action": "burn"}))["error"][
        "code"
    ] == "invalid_message"
    assert (await ask(msio, "esign", {"v": 1, "action": "sign", "extra": 1}))["error"][
        "code"
    ] == "invalid_message"

    async with aiohttp.ClientSession() as http:
        base = f"{running.url}/api/sessions/{state.id}"
        async with http.get(base + "/agreement.pdf") as r:
            assert r.status == 403  # no token
        async with http.get(
            base + "/agreement.pdf", headers={"Authorization": f"Bearer {tok_a}"}
        ) as r:
            assert (
                r.status == 404 and (await r.json())["error"]["code"] == "not_found"
            )  # not frozen
        async with http.get(
            base + "/evidence.zip", headers={"Authorization": f"Bearer {tok_m}"}
        ) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "conflict"  # not sealed
        other = running.mediation()
        _, foreign = running.token(other, "mediator")
        async with http.get(
            base + "/evidence.zip", headers={"Authorization": f"Bearer {foreign}"}
        ) as r:
            assert r.status == 403
    # and after all that, the party can still leave properly
    assert (await ask(asio, "leave", {"v": 1}))["ok"]
    assert running.service.state(state.id).participants[aid].space == "left"
