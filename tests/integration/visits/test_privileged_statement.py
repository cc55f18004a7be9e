"""A privileged (lawyer) visit over real HTTP, socket.io and aiortc (R2): the bureau terminal
gets the lawyer's signed statement during the visit and after it, the lawyer's phone downloads
it by its code, ``server.py verify`` checks it offline; and an officer's listen-in is refused at
every layer — the rooms command, the plan with a forced state, and the real media engine, which
forwards nothing to a forced observer or a recorder sink attached under the session's name."""

from __future__ import annotations

import datetime as dt
import json

import aiohttp
import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import RECORDER, plan
from rooms.state import CONSOLE, ParticipantState
from server import DESK, ENGINE, SERVICE
from server import main as server_main
from signaling.conductor import media_key
from tests.integration.signaling.conftest import until
from tests.integration.visits.conftest import approved_booking, visit_now
from tests.integration.visits.test_live_visit import Peer, check_in, kiosk_live
from visits.directory import insert_visitor
from visits.privilege import file_bytes, verify_bytes
from visits.reservations import Request

pytestmark = pytest.mark.slow


class CountingSink:
    """A recorder's place in the engine, counting what reaches it (nothing must)."""

    def __init__(self) -> None:
        self.frames = 0

    def on_frame(self, publisher, kind, frame) -> None:
        self.frames += 1

    def on_end(self, publisher, kind) -> None:
        pass


async def ask(http, url, token, body) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url + "/kiosk/statement", data=data, headers=headers) as r:
        return r.status, await r.json()


def statements_of(app):
    """The app's statement issuer, through the handler of its route (no app key holds it)."""
    for route in app.router.routes():
        if route.method == "POST" and route.resource.canonical == "/kiosk/statement":
            return route.handler.__self__.live.statements
    raise AssertionError("no statement route")


def add_lawyer(p) -> None:
    p.ids["lawyer"] = p.directory.add(
        insert_visitor,
        {
            "facility": "prison-a",
            "inmate_number": "A-001",
            "name": "律师 张",
            "relationship": "lawyer",
            "id_number": "LAW12345678",
            "evidence": "LICENCE-1",
            "approved_by": "officer-a",
            "reason": "engaged by the family",
            "expires": "2031-12-31",
        },
    )


async def test_lawyer_statement_and_listen_in_refused_at_every_layer(allday, tmp_path, capsys):
    p = allday
    service, engine, desk = p.app[SERVICE], p.app[ENGINE], p.app[DESK]
    add_lawyer(p)
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes, visitors=("lawyer",), kind="privileged")
    # at the same time a family visit of prison B from the bureau's other room
    before = start - dt.timedelta(days=2)
    family_bid = p.res.request(
        "staff:op", Request(p.ids["b1"], "bx-2", "pb-1", start, minutes, (p.ids["b1v0"],)), before
    )
    p.res.decide("staff:off-b", family_bid, approve=True, reason="", supervisor=False, now=before)
    bureau = p.directory.issue_credential("bx-1", 0.0)
    facility = p.directory.issue_credential("pa-1", 0.0)
    other_room = p.directory.issue_credential("bx-2", 0.0)
    lawyer, inmate = Peer("lawyer"), Peer("inmate")
    try:
        async with aiohttp.ClientSession() as http:
            live = await kiosk_live(http, p.url, bureau)
            inm_live = await kiosk_live(http, p.url, facility)
            session = live["session"]
            state = service.state(session)
            await check_in(p, bid, "lawyer", "LAW12345678")
            await lawyer.join(p.url, live["token"], (200, 40, 40))
            await inmate.join(p.url, inm_live["token"], (40, 40, 200))
            await until(lambda: all(x.space == "visit" for x in state.participants.values()), 15)
            await until(lambda: lawyer.bot.frames_from(inmate.pid) > 5, timeout=20)
            parties = {lawyer.pid, inmate.pid}

            # -- the route refuses what it must ------------------------------------------------
            assert (await ask(http, p.url, None, {"session": session}))[0] == 401
            assert (await ask(http, p.url, "pvt_forged", {"session": session}))[0] == 401
            for bad in (b"not json", {"sess": session}, {"session": 7}, {"session": "../x"}, [1]):
                status, body = await ask(http, p.url, bureau, bad)
                assert status == 400 and body["error"]["code"] == "invalid", bad
            status, body = await ask(http, p.url, bureau, b"x" * 2000)
            assert status == 413 and body["error"]["code"] == "too_large"
            status, body = await ask(http, p.url, bureau, {"session": "s-doesnotexist"})
            assert status == 404 and body["error"]["code"] == "not_found"
            for token in (facility, other_room):  # the inmate's room, another room of the bureau
                status, body = await ask(http, p.url, token, {"session": session})
                assert status == 403 and body["error"]["code"] == "forbidden"
            family = (await kiosk_live(http, p.url, other_room))["session"]
            status, body = await ask(http, p.url, other_room, {"session": family})
            assert status == 409 and body["error"]["code"] == "not_privileged"

            # -- during the visit: a statement as of the ledger head ----------------------------
            status, body = await ask(http, p.url, bureau, {"session": session})
            assert status == 200, body
            s = body["statement"]["statement"]
            assert s["session"] == session and s["kind"] == "privileged" and not s["ended"]
            assert {e[1] for e in s["plan_start"]["edges"]} == parties
            assert body["root_sha256"] == desk.root_sha256()
            failed, lines = verify_bytes(file_bytes(body["statement"]), desk.root_sha256())
            assert failed == 0, lines

            # -- listen-in, layer 1: the rooms command -----------------------------------------
            for role in ("officer", "supervisor"):
                with pytest.raises(CommandError) as err:
                    service.execute(
                        session,
                        "staff:off-a",
                        decode_command({"type": "add_observer", "name": "李", "role": role}),
                    )
                assert err.value.code == "forbidden"

            # -- layers 2 and 3: a forced state (an officer at the console, recording on) and a
            # recorder sink attached under the session's name; a command runs the conductor
            spy = ParticipantState("p-0000f0ce", "李警官", "officer", None)
            spy.space, spy.connected, spy.arrived = CONSOLE, True, True
            state.participants[spy.id] = spy
            state.recording = True
            sink = CountingSink()
            engine.attach_sink(media_key(session, RECORDER), sink)
            try:
                assert {e.subscriber for e in plan(state)} == parties
                service.execute(session, lawyer.pid, decode_command({"type": "chat", "text": "hi"}))
                # the window: the engine takes in 10 more frames of each party's video; a sink
                # on any edge of theirs would have had them
                inputs = [
                    engine.peers[media_key(session, pid)].publications["video"].forwarder
                    for pid in parties
                ]
                seen = [f.frames_in for f in inputs]
                await until(
                    lambda: all(f.frames_in > n + 10 for f, n in zip(inputs, seen, strict=True)),
                    timeout=60,
                )
                assert sink.frames == 0
                for pid in parties:
                    peer = engine.peers[media_key(session, pid)]
                    [other] = parties - {pid}
                    for publication in peer.publications.values():
                        assert set(publication.forwarder.subscriptions) == {
                            media_key(session, other)
                        }
                wanted = {key for key in engine._edges if key[0].startswith(session + "/")}
                assert {sub for _, sub, _ in wanted} == {media_key(session, x) for x in parties}
            finally:
                engine.detach_sink(media_key(session, RECORDER))
                del state.participants[spy.id]
                state.recording = False
            assert not state.recording and state.recorder == "none"

            # -- the end: the supervisor ends it; the statement covers the whole ledger ---------
            service.execute(
                session,
                "staff:sup-a",
                decode_command({"type": "end_session", "reason": "terminated:security"}),
            )
            status, body = await ask(http, p.url, bureau, {"session": session})
            assert status == 200, body
            s = body["statement"]["statement"]
            chain = {e.seq: e for e in service.events(session)}
            ended = next(e.seq for e in chain.values() if e.type == "session.ended")
            assert s["ended"] and s["ledger"]["head"] == chain[s["ledger"]["seq"]].hash
            assert s["ledger"]["seq"] >= ended
            assert s["plan_end"]["seq"] == ended - 1 and len(s["plan_end"]["edges"]) == 4
            assert s["checks"] == {
                "recorder_edges": 0,
                "outside_edges": 0,
                "other_participants": 0,
                "recording_events": 0,
            }
            # the lawyer's phone: the file by its code, and the QR code that carries it
            async with http.get(p.url + body["download"]) as r:
                assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
                raw = await r.read()
            async with http.get(p.url + body["download"] + "/qr.svg") as r:
                assert r.status == 200 and r.content_type == "image/svg+xml"
            for wrong in ("/kiosk/statement/nope", "/kiosk/statement/nope/qr.svg"):
                async with http.get(p.url + wrong) as r:
                    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
            # 15 minutes after the end the terminal no longer gets it; an hour after the code
            # was shown, the phone no longer does
            statements = statements_of(p.app)
            real = statements.clock
            statements.clock = lambda: real() + 16 * 60
            status, body_late = await ask(http, p.url, bureau, {"session": session})
            assert status == 410 and body_late["error"]["code"] == "expired"
            statements.clock = lambda: real() + 3601
            async with http.get(p.url + body["download"]) as r:
                assert r.status == 404
            statements.clock = real
        ledger = json.loads(raw)["statement"]["ledger"]
        assert ledger["head"] == service.events(session)[ledger["seq"] - 1].hash

        # -- offline: server.py verify, then one changed character ---------------------------
        path = tmp_path / "statement.json"
        path.write_bytes(raw)
        capsys.readouterr()
        assert server_main(["verify", str(path), "--root", desk.root_sha256()]) == 0
        assert "RESULT: VERIFIED" in capsys.readouterr().out
        path.write_bytes(raw.replace(b'"ended":true', b'"ended":false'))
        assert server_main(["verify", str(path), "--root", desk.root_sha256()]) == 1
        assert "NOT VERIFIED" in capsys.readouterr().out
    finally:
        await lawyer.close()
        await inmate.close()
