"""The officer's grid over real HTTP with real aiortc peers: live.json gives every visit's
status, time left and both ends' link rated from the media engine's figures; the grid
connection gets keyframes-only thumbnails of both ends; another prison's officer, a bureau
operator and bad input are refused; a privileged visit never has a thumbnail (R2)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from bench.bot import Bot
from rooms.plan import thumbnails
from server import ENGINE, SERVICE
from signaling.conductor import media_key
from signaling.visits_officer import GRID_INTERVAL, rate_link
from tests.integration.signaling.conftest import until
from tests.integration.visits.conftest import approved_booking, id_of, staff_session, visit_now
from tests.integration.visits.test_live_visit import Peer, check_in, kiosk_live
from visits.directory import insert_visitor

pytestmark = pytest.mark.slow


async def live_json(http, url, site="prison-a"):
    async with http.get(f"{url}/visits/sites/{site}/live.json") as r:
        return r.status, await r.json()


async def grid_offer(http, url, body, site="prison-a"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    async with http.post(
        f"{url}/visits/sites/{site}/grid/offer",
        data=data,
        headers={"Content-Type": "application/json"},
    ) as r:
        return r.status, await r.json()


async def open_visit(p, **kw):
    """A live family visit with both terminals connected as real peers."""
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes, **kw)
    tokens = {t: p.directory.issue_credential(t, 0.0) for t in ("bx-1", "pa-1")}
    family, inmate = Peer("family"), Peer("inmate")
    async with aiohttp.ClientSession() as http:
        fam_live = await kiosk_live(http, p.url, tokens["bx-1"])
        inm_live = await kiosk_live(http, p.url, tokens["pa-1"])
    return bid, fam_live, inm_live, family, inmate


async def test_the_grid_shows_links_and_keyframe_thumbnails(allday):
    p = allday
    service, engine = p.app[SERVICE], p.app[ENGINE]
    bid, fam_live, inm_live, family, inmate = await open_visit(p)
    grid_bot = None
    try:
        session = fam_live["session"]
        state = service.state(session)
        await check_in(p, bid, "a1v0", id_of("a1", 0))
        await family.join(p.url, fam_live["token"], (200, 40, 40), consent=True)
        await inmate.join(p.url, inm_live["token"], (40, 40, 200))
        await until(lambda: state.clock_since is not None, timeout=20)
        await until(lambda: family.bot.frames_from(inmate.pid) > 5, timeout=20)

        off_a, csrf = await staff_session(p.url, "off-a")
        async with off_a:
            async with off_a.get(f"{p.url}/visits/sites/prison-a/live") as r:
                html = await r.text()
            assert "data-pictures='1'" in html and "class='thumb'" in html
            assert f"data-media='{media_key(session, family.pid)}'" in html

            status, data = await live_json(off_a, p.url)
            assert status == 200 and data["ok"]
            [visit] = data["visits"]
            assert visit["session"] == session and visit["status"]["code"] == "live"
            assert visit["running"] and 0 < visit["remaining"] <= state.time_limit
            ends = {e["side"]: e for e in visit["ends"]}
            assert ends["family"]["media"] == media_key(session, family.pid)
            for end in ends.values():
                q = end["quality"]
                # a loaded machine may rate its own loopback poor: online is never "offline"
                assert end["online"] and q["rating"] in ("good", "fair", "poor")
                assert q["label"].endswith(q["rating"])  # 良好 good, 一般 fair, 较差 poor
                assert q["last_media_s"] is not None and q["kbps"] > 0
            # the rating is the engine's figures rated, not a constant
            raw = engine.quality(media_key(session, inmate.pid))
            assert raw["video"]["bitrate"] and raw["video"]["age"] is not None
            calm = {**raw, "loss": 0.0, "rtt": 0.01, "video": {**raw["video"], "age": 0.05}}
            assert rate_link(calm) == "good"
            assert rate_link({**calm, "loss": 0.05}) == "fair"
            assert rate_link({**calm, "rtt": 0.3}) == "fair"
            assert rate_link({**calm, "loss": 0.2}) == "poor"
            assert rate_link({**calm, "audio": None, "video": {**raw["video"], "age": 2.0}}) == (
                "poor"
            )
            assert rate_link({**calm, "state": "connecting"}) == "offline"
            assert data["grid"] == []  # no grid connection yet

            # the grid's connection: thumbnails of both ends, keyframes only
            grid_bot = Bot("grid-off-a", slots=2)
            status, reply = await grid_offer(
                off_a, p.url, {"csrf": csrf, "sdp": await grid_bot.create_offer()}
            )
            assert status == 200 and reply["ok"], reply
            await grid_bot.accept_answer(reply["sdp"])
            status, data = await live_json(off_a, p.url)
            assert {s["part"] for s in data["grid"]} == {0}
            assert {s["media"] for s in data["grid"] if s["media"]} == {
                media_key(session, family.pid),
                media_key(session, inmate.pid),
            }
            grid_bot.set_slot_map(engine.slot_map("grid:prison-a:off-a:0"))
            await until(
                lambda: (
                    grid_bot.frames_from(family.pid) >= 1 and grid_bot.frames_from(inmate.pid) >= 1
                ),
                timeout=20,
            )
            forwarder = engine.peers[media_key(session, family.pid)].publications["video"]
            sub = forwarder.forwarder.subscriptions["grid:prison-a:off-a:0"]
            assert sub.keyframe_interval == GRID_INTERVAL
            n, full = grid_bot.frames_from(family.pid), inmate.bot.frames_from(family.pid)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 6.0:  # keep polling, as the page does
                await live_json(off_a, p.url)
                await asyncio.sleep(1.0)
            thumbs = grid_bot.frames_from(family.pid) - n
            assert 1 <= thumbs <= 6.0 / (0.75 * GRID_INTERVAL) + 1, thumbs
            assert inmate.bot.frames_from(family.pid) - full > 10 * thumbs  # full rate there
            assert grid_bot.unreadable_frames == 0
            # never sound on the grid
            assert not [s for s in engine.slot_map("grid:prison-a:off-a:0") if s["audio"]]
            # a second connection (part 1: visits 9-16) carries nothing while there is one visit
            part1 = Bot("grid-off-a-1", slots=2)
            try:
                status, reply = await grid_offer(
                    off_a, p.url, {"csrf": csrf, "part": 1, "sdp": await part1.create_offer()}
                )
                assert status == 200, reply
                await part1.accept_answer(reply["sdp"])
                status, data = await live_json(off_a, p.url)
                assert {s["part"] for s in data["grid"]} == {0, 1}
                assert not [s for s in data["grid"] if s["part"] == 1 and s["media"]]
                assert len([s for s in data["grid"] if s["part"] == 0 and s["media"]]) == 2
            finally:
                await part1.close()
            # the parties never learn of the grid
            for peer in (family, inmate):
                assert len(peer.last()["participants"]) == 2
    finally:
        if grid_bot is not None:
            await grid_bot.close()
        for peer in (family, inmate):
            await peer.close()


async def test_grid_routes_refuse_other_sites_operators_and_bad_input(allday):
    p = allday
    url = p.url
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{url}/visits/sites/prison-a/live.json") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"
        status, data = await grid_offer(anon, url, {"sdp": "v=0"})
        assert status == 401
    off_b, csrf_b = await staff_session(url, "off-b")
    async with off_b:
        status, data = await live_json(off_b, url)
        assert status == 403 and data["error"]["code"] == "forbidden"
        status, data = await grid_offer(off_b, url, {"csrf": csrf_b, "sdp": "v=0"})
        assert status == 403 and data["error"]["code"] == "forbidden"
    op, csrf_op = await staff_session(url, "op")
    async with op:  # the bureau's operator sees the list of its site, never pictures
        status, data = await live_json(op, url, site="bureau-x")
        assert status == 200 and data["ok"]
        status, data = await grid_offer(op, url, {"csrf": csrf_op, "sdp": "v=0"}, site="bureau-x")
        assert status == 403 and data["error"]["code"] == "forbidden"
    off_a, csrf = await staff_session(url, "off-a")
    async with off_a:
        status, data = await live_json(off_a, url, site="no-such-site")
        assert status in (403, 404)
        for body, code, want in (
            ("not json", "invalid", 400),
            ({"csrf": csrf}, "invalid", 400),
            ({"csrf": csrf, "sdp": 5}, "invalid", 400),
            (["csrf", "sdp"], "invalid", 400),
            ({"csrf": "forged", "sdp": "v=0"}, "csrf", 403),
            ({"csrf": csrf, "sdp": "v=0"}, "bad_sdp", 400),
            ({"csrf": csrf, "sdp": "x" * 100_000}, "invalid", 400),
            ({"csrf": csrf, "sdp": "v=0", "part": 2}, "invalid", 400),
            ({"csrf": csrf, "sdp": "v=0", "part": "0"}, "invalid", 400),
            ({"csrf": csrf, "sdp": "v=0", "part": True}, "invalid", 400),
        ):
            status, data = await grid_offer(off_a, url, body)
            assert (status, data["error"]["code"]) == (want, code), body
    assert not [k for k in p.app[ENGINE].peers if k.startswith("grid:")]


async def test_a_privileged_visit_never_has_a_thumbnail(allday):
    p = allday
    service, engine = p.app[SERVICE], p.app[ENGINE]
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
    bid, law_live, inm_live, lawyer, inmate = await open_visit(
        p, visitors=("lawyer",), kind="privileged"
    )
    grid_bot = None
    try:
        session = law_live["session"]
        state = service.state(session)
        await check_in(p, bid, "lawyer", "LAW12345678")
        await lawyer.join(p.url, law_live["token"], (200, 40, 40))
        await inmate.join(p.url, inm_live["token"], (40, 40, 200))
        await until(lambda: lawyer.bot.frames_from(inmate.pid) > 5, timeout=20)
        assert thumbnails(state, "grid:x", GRID_INTERVAL) == frozenset()
        for user in ("off-a", "sup-a"):
            http, csrf = await staff_session(p.url, user)
            async with http:
                async with http.get(f"{p.url}/visits/sites/prison-a/live") as r:
                    html = await r.text()
                assert f"data-session='{session}'" in html and "class='thumb'" not in html
                grid_bot = Bot(f"grid-{user}", slots=2)
                status, reply = await grid_offer(
                    http, p.url, {"csrf": csrf, "sdp": await grid_bot.create_offer()}
                )
                assert status == 200, reply
                await grid_bot.accept_answer(reply["sdp"])
                status, data = await live_json(http, p.url)
                [visit] = data["visits"]
                assert visit["privileged"] and visit["ends"][0]["online"]
                assert not [s for s in data["grid"] if s["media"]]
                key = f"grid:prison-a:{user}:0"
                for pub in (lawyer.pid, inmate.pid):
                    forwarder = engine.peers[media_key(session, pub)].publications["video"]
                    assert key not in forwarder.forwarder.subscriptions
                await grid_bot.close()
                grid_bot = None
    finally:
        if grid_bot is not None:
            await grid_bot.close()
        for peer in (lawyer, inmate):
            await peer.close()
