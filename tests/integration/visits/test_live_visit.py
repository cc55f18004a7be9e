"""The live visit end to end with real aiortc peers as the two terminals and the officer.

A booking approved for now opens a session by itself; each terminal gets its place through its
device token (the kiosk's route) and connects with a real peer; the operator checks the family in
at the counter; the server starts the recording and admits both (R1, R6); an officer of the
facility listens in silently, warns (both terminals get the reason, R4) and ends the visit with
a reason in one action (both terminals end at once, the booking completes). An officer of
another prison is refused everything; a privileged visit is never observed (R2).
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
import socketio

from bench.bot import Bot
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import plan
from server import SERVICE
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until
from tests.integration.visits.conftest import (
    approved_booking,
    id_of,
    staff_session,
    visit_now,
)
from visits.directory import insert_visitor

pytestmark = pytest.mark.slow


class Peer:
    """A socket.io client and an aiortc bot on one invitation."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: dict[str, list] = {"welcome": [], "state": [], "error": []}
        self.bot: Bot | None = None

    async def join(self, url: str, token: str, color, consent: bool = False) -> None:
        for name in self.inbox:
            self.sio.on(
                name,
                (lambda n: lambda data=None: self.inbox[n].append(data))(name),
                namespace=NAMESPACE,
            )
        await self.sio.connect(
            url, namespaces=[NAMESPACE], auth={"token": token}, transports=["websocket"]
        )
        await until(lambda: self.inbox["welcome"])
        welcome = self.inbox["welcome"][0]
        if consent:
            reply = await self.sio.call(
                "command",
                {
                    "v": 1,
                    "cmd": {"type": "record_consent", "topic": "session_rules", "given": True},
                },
                namespace=NAMESPACE,
            )
            assert reply["ok"], reply
        self.pid = welcome["participant"]
        self.bot = Bot(self.pid, slots=welcome["slots"], color=color, tone_hz=None, size=(160, 120))
        reply = await self.sio.call(
            "offer", {"v": 1, "sdp": await self.bot.create_offer()}, namespace=NAMESPACE
        )
        assert reply["ok"], reply
        await self.bot.accept_answer(reply["sdp"])
        self.bot.set_slot_map(reply["slots"])
        self.sio.on("slots", lambda msg: self.bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)
        await self.bot.wait_connected(15)

    def last(self) -> dict:
        return self.inbox["state"][-1] if self.inbox["state"] else {}

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        if self.bot is not None:
            await self.bot.close()


async def kiosk_live(http, url, token, within: float = 20.0) -> dict:
    """The terminal's place in its visit, once the session opened (on the live visits' beat)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        async with http.post(
            url + "/kiosk/state", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 200
            live = (await r.json())["live"]
        if live:
            return live
        await asyncio.sleep(0.1)
    raise AssertionError("the visit's session never opened")


async def check_in(p, bid, visitor: str, number: str) -> None:
    """The operator checks a visitor in at the counter, through the real page."""
    op, csrf = await staff_session(p.url, "op")
    async with op:
        data = {
            "csrf": csrf,
            "visitor": str(p.ids[visitor]),
            "id_number": number,
            "method": "id_card",
            "pledge": "yes",
        }
        async with op.post(
            f"{p.url}/visits/bookings/{bid}/checkin", data=data, allow_redirects=False
        ) as r:
            assert r.status == 303, await r.text()


async def post(http, url, csrf, reason):
    async with http.post(url, data={"csrf": csrf, "reason": reason}, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_a_warned_and_ended_visit_shows_on_both_terminals(allday):
    p = allday
    service = p.app[SERVICE]
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes)
    family_token = p.directory.issue_credential("bx-1", 0.0)
    inmate_token = p.directory.issue_credential("pa-1", 0.0)
    family, inmate, officer = Peer("family"), Peer("inmate"), Peer("officer")
    try:
        async with aiohttp.ClientSession() as http:
            fam_live = await kiosk_live(http, p.url, family_token)
            inm_live = await kiosk_live(http, p.url, inmate_token)
        assert fam_live["session"] == inm_live["session"]
        assert (fam_live["role"], inm_live["role"], fam_live["kind"]) == (
            "visitor",
            "inmate",
            "visitation",
        )
        session = fam_live["session"]
        state = service.state(session)
        await family.join(p.url, fam_live["token"], (200, 40, 40), consent=True)
        await inmate.join(p.url, inm_live["token"], (40, 40, 200))
        # R6: not before the check-in at the counter, whatever the terminals do
        await until(lambda: state.recorder == "ready", timeout=10)
        assert all(pp.space == "waiting" for pp in state.participants.values())
        await check_in(p, bid, "a1v0", id_of("a1", 0))
        await until(
            lambda: all(pp.space == "visit" for pp in state.participants.values()), timeout=15
        )
        assert state.recording  # R1: recorded from the moment it is live
        checked = [e for e in service.events(session) if e.type == "participant.identity_checked"]
        assert checked[0].data["method"] == "check_in" and "staff:op" in checked[0].data["detail"]
        await until(lambda: family.bot.frames_from(inmate.pid) > 5, timeout=20)
        await until(lambda: inmate.bot.frames_from(family.pid) > 5, timeout=20)
        clock = family.last()["session"]["clock"]
        assert clock["running"] and clock["limit"] == minutes * 60

        # an officer of another prison: nothing of this visit
        off_b, csrf_b = await staff_session(p.url, "off-b")
        async with off_b:
            async with off_b.get(f"{p.url}/visits/live/{session}/watch") as r:
                assert r.status == 403 and "data-code='forbidden'" in await r.text()
            for action, reason in (("warn", "language"), ("end", "security"), ("mute", "")):
                status, _ = await post(
                    off_b, f"{p.url}/visits/live/{session}/{action}", csrf_b, reason
                )
                assert status == 403, action
            async with off_b.get(f"{p.url}/visits/sites/prison-a/live") as r:
                assert r.status == 403
        assert not [
            e for e in service.events(session) if e.type in ("visit.warned", "session.ended")
        ]

        off_a, csrf_a = await staff_session(p.url, "off-a")
        async with off_a:
            async with off_a.get(f"{p.url}/visits/sites/prison-a/live") as r:
                listing = await r.text()
            assert f"data-session='{session}'" in listing and "/watch" in listing
            async with off_a.get(f"{p.url}/visits/live/{session}/watch") as r:
                assert r.status == 200
                watch_token = re.search(r"data-token='([^']+)'", await r.text()).group(1)
            await officer.join(p.url, watch_token, (40, 200, 40))
            # the officer hears and sees both; the parties receive nothing of the officer and
            # never learn the officer is there
            await until(lambda: officer.bot.frames_from(family.pid) > 5, timeout=20)
            await until(lambda: officer.bot.frames_from(inmate.pid) > 5, timeout=20)
            assert family.bot.frames_from(officer.pid) == 0 == inmate.bot.frames_from(officer.pid)
            for peer in (family, inmate):
                assert officer.pid not in {x["id"] for x in peer.last()["participants"]}

            for bad in ("", "shout", "x" * 50):
                status, html = await post(off_a, f"{p.url}/visits/live/{session}/warn", csrf_a, bad)
                assert status == 400 and "data-code='invalid'" in html
            # mute one side: the inmate's sound reaches nobody, the picture goes on
            mute = {"csrf": csrf_a, "side": "inmate", "on": "1"}
            for bad in ({**mute, "side": "officer"}, {**mute, "on": "yes"}):
                async with off_a.post(
                    f"{p.url}/visits/live/{session}/mute", data=bad, allow_redirects=False
                ) as r:
                    assert r.status == 400
            async with off_a.post(
                f"{p.url}/visits/live/{session}/mute", data=mute, allow_redirects=False
            ) as r:
                assert r.status == 303
            assert state.participants[inmate.pid].muted
            edges = {(e.publisher, e.kind) for e in plan(state)}
            assert (inmate.pid, "audio") not in edges and (inmate.pid, "video") in edges
            assert (family.pid, "audio") in edges
            seen = family.bot.frames_from(inmate.pid)
            await until(lambda: family.bot.frames_from(inmate.pid) > seen + 5, timeout=20)
            [muted] = [e for e in service.events(session) if e.type == "participant.muted"]
            assert muted.actor == "staff:off-a"

            status, _ = await post(off_a, f"{p.url}/visits/live/{session}/warn", csrf_a, "language")
            assert status == 303
            for peer in (family, inmate):
                await until(lambda peer=peer: peer.last()["session"]["warnings"], timeout=10)
                [warning] = peer.last()["session"]["warnings"]
                assert warning["reason"] == "language" and "by" not in warning
            [warned] = [e for e in service.events(session) if e.type == "visit.warned"]
            assert warned.actor == "staff:off-a" and warned.ts > 0

            status, _ = await post(off_a, f"{p.url}/visits/live/{session}/end", csrf_a, "security")
            assert status == 303
        for peer in (family, inmate):
            await until(lambda peer=peer: peer.last()["session"]["ended"], timeout=10)
            assert peer.last()["session"]["ended_reason"] == "terminated:security"
            await until(lambda peer=peer: peer.inbox["error"], timeout=10)
            assert peer.inbox["error"][-1]["code"] == "ended"
        [ended] = [e for e in service.events(session) if e.type == "session.ended"]
        assert ended.actor == "staff:off-a" and ended.data["reason"] == "terminated:security"
        await until(lambda: p.res.get(bid).status == "completed", timeout=10)
        assert p.res.log(bid)[-1][1:] == ("system", "completed", "terminated:security")
    finally:
        for peer in (family, inmate, officer):
            await peer.close()


async def test_a_privileged_visit_cannot_be_observed(allday):
    p = allday
    service = p.app[SERVICE]
    lawyer = p.directory.add(
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
    p.ids["lawyer"] = lawyer
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes, visitors=("lawyer",), kind="privileged")
    bureau_token = p.directory.issue_credential("bx-1", 0.0)
    inmate_token = p.directory.issue_credential("pa-1", 0.0)
    lawyer_peer, inmate = Peer("lawyer"), Peer("inmate")
    try:
        async with aiohttp.ClientSession() as http:
            law_live = await kiosk_live(http, p.url, bureau_token)
            inm_live = await kiosk_live(http, p.url, inmate_token)
        assert (law_live["kind"], law_live["role"]) == ("privileged", "lawyer")
        session = law_live["session"]
        state = service.state(session)
        await check_in(p, bid, "lawyer", "LAW12345678")
        await lawyer_peer.join(p.url, law_live["token"], (200, 40, 40))
        await inmate.join(p.url, inm_live["token"], (40, 40, 200))
        await until(
            lambda: all(pp.space == "visit" for pp in state.participants.values()), timeout=15
        )
        await until(lambda: lawyer_peer.bot.frames_from(inmate.pid) > 5, timeout=20)
        assert not state.recording and state.recorder == "none"  # never a recorder (R2)

        for user in ("off-a", "sup-a"):
            http, csrf = await staff_session(p.url, user)
            async with http:
                async with http.get(f"{p.url}/visits/sites/prison-a/live") as r:
                    listing = await r.text()
                assert f"data-session='{session}'" in listing  # seen: status and time only
                assert f"/visits/live/{session}/watch" not in listing
                async with http.get(f"{p.url}/visits/live/{session}/watch") as r:
                    assert r.status == 403 and "data-code='forbidden'" in await r.text()
                status, _ = await post(
                    http, f"{p.url}/visits/live/{session}/warn", csrf, "language"
                )
                assert status == 403
        with pytest.raises(CommandError) as err:  # rooms refuses it too, whoever asks
            service.execute(
                session,
                "staff:off-a",
                decode_command({"type": "add_observer", "name": "李", "role": "officer"}),
            )
        assert err.value.code == "forbidden"
        assert {e.subscriber for e in plan(state)} == {lawyer_peer.pid, inmate.pid}
        assert not [x for x in state.participants.values() if x.role in ("officer", "supervisor")]
        # ending it is a supervisor's, for security, without media; not an officer's
        off_a, csrf_a = await staff_session(p.url, "off-a")
        async with off_a:
            status, _ = await post(off_a, f"{p.url}/visits/live/{session}/end", csrf_a, "security")
            assert status == 403
            async with off_a.post(
                f"{p.url}/visits/live/{session}/mute",
                data={"csrf": csrf_a, "side": "inmate", "on": "1"},
                allow_redirects=False,
            ) as r:
                assert r.status == 403  # nobody mutes a privileged visit
        sup, csrf_s = await staff_session(p.url, "sup-a")
        async with sup:
            status, _ = await post(sup, f"{p.url}/visits/live/{session}/end", csrf_s, "security")
            assert status == 303
        assert state.ended and state.ended_reason == "terminated:security"
    finally:
        for peer in (lawyer_peer, inmate):
            await peer.close()


async def test_an_outage_is_not_counted(allday):
    """R17: one terminal's connection is cut mid-visit; while it is away the clock stands still,
    and when it is back the visit goes on with the time it had."""
    p = allday
    service = p.app[SERVICE]
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes)
    tokens = {t: p.directory.issue_credential(t, 0.0) for t in ("bx-1", "pa-1")}
    family, inmate, back = Peer("family"), Peer("inmate"), Peer("inmate again")
    try:
        async with aiohttp.ClientSession() as http:
            fam_live = await kiosk_live(http, p.url, tokens["bx-1"])
            inm_live = await kiosk_live(http, p.url, tokens["pa-1"])
            await check_in(p, bid, "a1v0", id_of("a1", 0))
            await family.join(p.url, fam_live["token"], (200, 40, 40), consent=True)
            await inmate.join(p.url, inm_live["token"], (40, 40, 200))
            state = service.state(fam_live["session"])
            await until(lambda: state.clock_since is not None, timeout=15)
            await inmate.close()  # the prison's line drops
            await until(lambda: not state.participants[inmate.pid].connected, timeout=15)
            assert state.clock_since is None and state.outage_since is not None
            frozen = state.remaining(time.time())
            cut = time.time()
            await until(lambda: time.time() - cut > 5, timeout=10)  # the outage lasts 5 s
            assert state.remaining(time.time()) == pytest.approx(frozen)  # nothing counted
            assert not state.ended  # well inside the 300 s grace
            again = await kiosk_live(http, p.url, tokens["pa-1"])
            await back.join(p.url, again["token"], (40, 40, 200))
        await until(lambda: state.clock_since is not None, timeout=15)
        assert state.participants[inmate.pid].space == "visit"  # back in the visit, not waiting
        assert state.remaining(time.time()) == pytest.approx(frozen, abs=3)
        await until(lambda: family.bot.frames_from(back.pid) > 5, timeout=20)
        kinds = [
            e.data.get("reason")
            for e in service.events(state.id)
            if e.type == "participant.disconnected"
        ]
        assert kinds == ["transport_lost"]  # the outage is in the ledger with its times
    finally:
        for peer in (family, inmate, back):
            await peer.close()
