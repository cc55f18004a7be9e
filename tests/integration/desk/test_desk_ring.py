"""The mediator's panel while the desk rings (S4), through the routes the panel calls with its
invitation as a bearer token: the one-line question reaches the lawyers' queue, the panel learns
who accepted; the fallback link's moment (at once with nobody on shift, after the ring time
otherwise) and its reason; every refusal with its code."""

from __future__ import annotations

import aiohttp

from rooms.commands import decode_command
from server import CONSULT
from tests.integration.desk.helpers import Lawyer, call, setup_desk


def called(running, space="joint"):
    """A mediation whose mediator called the desk: (state, mediator token, party token, lawyer)."""
    state = running.mediation(parties=1)
    mid, mtoken = running.token(state, "mediator")
    _, ptoken = running.token(state, "party")
    running.service.execute(
        state.id, mid, decode_command({"type": "call_duty_lawyer", "name": "值班律师"})
    )
    lawyer = next(
        p.id
        for p in running.service.state(state.id).participants.values()
        if p.role == "duty_lawyer"
    )
    return state, mtoken, ptoken, lawyer


async def ring(http, running, state, lawyer, token, payload=None):
    url = f"{running.url}/api/sessions/{state.id}/desk-ring/{lawyer}"
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return await call(http, "POST" if payload is not None else "GET", url, payload, auth)


async def test_the_question_rings_the_desk_and_the_panel_learns_who_accepted(running):
    setup_desk(running, lawyers=("li",), on_shift=("li",))
    li = await Lawyer(running, "li").login()
    state, mtoken, _, lawyer = called(running)
    async with aiohttp.ClientSession() as http:
        try:
            status, data = await ring(http, running, state, lawyer, mtoken)
            assert status == 200, data
            g = data["ring"]
            assert (g["state"], g["fallback"], g["reason"]) == ("ringing", False, None)
            assert g["ring_seconds"] == running.app[CONSULT].ring_seconds
            question = "  被申请人称 合同无效，能否主张违约金？ "
            status, data = await ring(http, running, state, lawyer, mtoken, {"question": question})
            assert status == 200, data
            _, desk = await li.get()
            [row] = desk["desk"]["queue"]
            assert row["kind"] == "mediation"
            assert row["question"].endswith("被申请人称 合同无效，能否主张违约金？")
            assert state.case_number in row["question"]
            status, data = await li.post("pickup", {"ticket": row["id"]})
            assert status == 200, data
            _, data = await ring(http, running, state, lawyer, mtoken)
            g = data["ring"]
            assert (g["state"], g["lawyer"], g["lawyer_name"]) == ("accepted", "li", "律师 li")
            assert g["fallback"] is False
            status, data = await ring(http, running, state, lawyer, mtoken, {"question": "late"})
            assert status == 409 and data["error"]["code"] == "conflict"  # answered already
        finally:
            await li.close()


async def test_the_fallback_link_at_once_when_nobody_is_on_shift(running):
    setup_desk(running, lawyers=("li",), on_shift=())
    state, mtoken, _, lawyer = called(running)
    async with aiohttp.ClientSession() as http:
        _, data = await ring(http, running, state, lawyer, mtoken)
        g = data["ring"]
        assert (g["state"], g["fallback"], g["reason"]) == ("ringing", True, "no_lawyer_on_shift")
        assert g["elapsed"] < g["ring_seconds"]


async def test_the_fallback_link_after_the_ring_time(running):
    setup_desk(running, lawyers=("li",), on_shift=("li",))
    desk = running.app[CONSULT]
    state, mtoken, _, lawyer = called(running)
    async with aiohttp.ClientSession() as http:
        _, data = await ring(http, running, state, lawyer, mtoken)
        assert data["ring"]["fallback"] is False
        real = desk.clock
        desk.clock = lambda: real() + desk.ring_seconds - 1  # the ring time not yet over
        _, data = await ring(http, running, state, lawyer, mtoken)
        assert data["ring"]["fallback"] is False
        desk.clock = lambda: real() + desk.ring_seconds  # over: the link, and why
        _, data = await ring(http, running, state, lawyer, mtoken)
        g = data["ring"]
        assert (g["state"], g["fallback"], g["reason"]) == ("ringing", True, "no_answer")
        assert g["elapsed"] >= g["ring_seconds"]


async def test_bad_questions(running):
    setup_desk(running)
    state, mtoken, _, lawyer = called(running)
    async with aiohttp.ClientSession() as http:
        for payload in [
            {},
            {"question": ""},
            {"question": "   "},
            {"question": "x" * 201},
            {"question": 3},
            {"question": "ok", "x": 1},
            [],
        ]:
            status, data = await ring(http, running, state, lawyer, mtoken, payload)
            assert status == 400 and data["error"]["code"] == "invalid", payload
    [t] = running.app[CONSULT].store.live()
    assert t.question == state.case_number  # unchanged


async def test_only_the_sessions_mediator_and_only_for_its_lawyer(running):
    setup_desk(running)
    state, mtoken, ptoken, lawyer = called(running)
    other, otoken, _, olawyer = called(running)
    async with aiohttp.ClientSession() as http:
        for token, sid, pid, status_code, code in [
            (None, state, lawyer, 403, "forbidden"),
            ("not-a-token", state, lawyer, 403, "forbidden"),
            (ptoken, state, lawyer, 403, "forbidden"),  # a party may not
            (otoken, state, lawyer, 403, "forbidden"),  # another session's mediator
            (mtoken, state, olawyer, 404, "not_found"),  # another session's lawyer
            (mtoken, state, "p-nobody", 404, "not_found"),
        ]:
            for payload in (None, {"question": "q"}):
                status, data = await ring(http, running, sid, pid, token, payload)
                assert (status, data["error"]["code"]) == (status_code, code), (token, pid)
        mid = next(p.id for p in state.participants.values() if p.role == "mediator")
        status, data = await ring(http, running, state, mid, mtoken)  # not a duty lawyer
        assert status == 404
    assert all(t.question == t.question.strip() for t in running.app[CONSULT].store.live())


async def test_no_client_writes_a_desk_step_through_the_socket(running):
    from signaling.namespace import NAMESPACE

    setup_desk(running)
    state, mtoken, _, _ = called(running)
    sio, _ = await running.client(mtoken)
    reply = await sio.call(
        "command",
        {"v": 1, "cmd": {"type": "desk_event", "step": "accepted", "ticket": 1}},
        namespace=NAMESPACE,
        timeout=5,
    )
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
    assert "desk.accepted" not in [e.type for e in running.service.events(state.id)]
