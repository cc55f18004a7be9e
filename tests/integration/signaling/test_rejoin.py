"""Over the real socket: a party who left comes back through the same link into the waiting
room; a removed one is refused; the same link opened on a second device asks before taking
over, and taking over sends a party back to the waiting room (the mediator keeps the place)."""

from __future__ import annotations

import socketio

from rooms.commands import decode_command
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until


async def connect(running, token, **extra):
    """(client, inbox) connected with ``auth = {token, **extra}``, or (None, refusal data)."""
    sio = socketio.AsyncClient(reconnection=False)
    inbox: dict[str, list] = {"welcome": [], "state": [], "error": [], "refused": []}
    for name in ("welcome", "state", "error"):
        sio.on(name, (lambda n: lambda data=None: inbox[n].append(data))(name), namespace=NAMESPACE)
    sio.on("connect_error", lambda data=None: inbox["refused"].append(data), namespace=NAMESPACE)
    try:
        await sio.connect(
            running.url,
            namespaces=[NAMESPACE],
            auth={"token": token, **extra},
            transports=["websocket"],
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError:
        await until(lambda: inbox["refused"])
        return None, (inbox["refused"][0] or {}).get("data") or {}
    running.clients.append(sio)
    await until(lambda: inbox["welcome"])
    return sio, inbox


def system(running, state, **raw):
    running.service.execute(state.id, "system", decode_command(raw))


def admitted(running, state, pid, mid):
    for who in (mid, pid):
        system(running, state, type="connect", participant=who)
    for topic in ("online_mediation", "session_rules"):
        running.service.execute(
            state.id, pid, decode_command({"type": "record_consent", "topic": topic, "given": True})
        )
    running.service.execute(state.id, mid, decode_command({"type": "admit", "participant": pid}))
    assert running.service.state(state.id).participants[pid].space == "joint"


async def test_a_party_who_left_comes_back_to_the_waiting_room(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    msio, _ = await connect(running, tok_m)
    asio, _ = await connect(running, tok_a)
    admitted(running, state, aid, mid)
    r = await asio.call("leave", {"v": 1}, namespace=NAMESPACE, timeout=5)
    assert r == {"ok": True}
    await asio.disconnect()
    assert state.participants[aid].space == "left"

    again, inbox = await connect(running, tok_a, device="phone-1")
    assert again is not None, inbox
    assert inbox["welcome"][0]["session"]["you"]["space"] == "waiting"
    types = [e.type for e in running.service.events(state.id)]
    assert types[-1] == "participant.rejoined"
    # the session goes on (the mediator chats): the returned party's socket stays up
    r = await msio.call(
        "command", {"v": 1, "cmd": {"type": "chat", "text": "hi"}}, namespace=NAMESPACE, timeout=5
    )
    assert r["ok"], r
    await until(lambda: len(inbox["state"]) >= 1)
    assert again.connected and not inbox["error"]


async def test_the_mediator_who_left_comes_back_into_the_session(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    msio, _ = await connect(running, tok_m)
    assert (await msio.call("leave", {"v": 1}, namespace=NAMESPACE, timeout=5))["ok"]
    await msio.disconnect()
    again, inbox = await connect(running, tok_m)
    assert again is not None, inbox
    assert inbox["welcome"][0]["session"]["you"]["space"] == "joint"


async def test_a_removed_party_stays_out(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    running.service.execute(
        state.id,
        "staff:test",
        decode_command({"type": "remove", "participant": aid, "reason": "x"}),
    )
    sio, refusal = await connect(running, tok_a)
    assert sio is None and refusal["code"] == "participant_gone", refusal


async def test_a_second_device_asks_then_takes_over_and_waits_for_admission(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    await connect(running, tok_m, device="desk")
    first, first_inbox = await connect(running, tok_a, device="phone-1")
    admitted(running, state, aid, mid)

    sio, refusal = await connect(running, tok_a, device="phone-2")
    assert sio is None and refusal["code"] == "in_use", refusal
    assert first.connected and state.participants[aid].space == "joint"

    second, inbox = await connect(running, tok_a, device="phone-2", takeover=True)
    assert second is not None
    await until(lambda: not first.connected)
    assert any(e and e.get("code") == "replaced" for e in first_inbox["error"])
    assert state.participants[aid].space == "waiting"
    moved = [e for e in running.service.events(state.id) if e.type == "participant.moved"]
    assert moved[-1].data["reason"] == "new_device"

    # the same device (a reload) replaces its own older socket without asking
    third, inbox3 = await connect(running, tok_a, device="phone-2")
    assert third is not None
    await until(lambda: not second.connected)


async def test_the_mediator_taking_over_keeps_the_place(running):
    state = running.mediation(parties=1)
    mid, tok_m = running.token(state, "mediator")
    aid, tok_a = running.token(state, "party")
    await connect(running, tok_m, device="desk")
    await connect(running, tok_a, device="phone")
    admitted(running, state, aid, mid)
    sio, refusal = await connect(running, tok_m, device="laptop")
    assert sio is None and refusal["code"] == "in_use"
    sio, inbox = await connect(running, tok_m, device="laptop", takeover=True)
    assert inbox["welcome"][0]["session"]["you"]["space"] == "joint"
    assert state.participants[aid].space == "joint" and not state.held
