"""The bench server's plan (who forwards to whom) and its answer to bad offers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.load_server import LoadServer, OfferRequest
from media.engine import MediaConfig, MediaEngine


def member(room: str, name: str, publish: bool, audio: bool = True) -> OfferRequest:
    return OfferRequest(room=room, participant=name, publish=publish, sdp="-", audio=audio)


def test_plan_is_every_publisher_of_a_room_to_every_other_member():
    server = LoadServer(engine=None)
    server.rooms = {
        "r0": {n: member("r0", n, True) for n in ("a", "b", "c")},
        "r1": {"pub": member("r1", "pub", True, audio=False), "sub": member("r1", "sub", False)},
    }
    edges = {(e.publisher, e.subscriber, e.kind) for e in server.plan()}
    r0 = {(p, s, k) for p in "abc" for s in "abc" if p != s for k in ("audio", "video")}
    assert edges == r0 | {("pub", "sub", "video")}  # no audio published, subscribers send none


async def test_bad_offers_get_a_400_and_join_nobody():
    engine = MediaEngine(MediaConfig(ice_host_addresses=["192.0.2.2"]))
    await engine.start()
    server = LoadServer(engine)
    app = web.Application()
    app.router.add_post("/offer", server.offer)
    async with TestClient(TestServer(app)) as client:
        for body in (
            b"not json",
            b'{"room": "r0"}',
            b'{"room": "r0", "participant": "p", "publish": true, "sdp": "x", "extra": 1}',
            b'{"room": "r0", "participant": "p", "publish": true, "sdp": "v=0 garbage"}',
        ):
            r = await client.post("/offer", data=body)
            assert r.status == 400, body
            assert "error" in await r.json()
    assert server.rooms == {} and engine.peers == {}
    await engine.close()


async def test_loop_lag_reports_how_late_timers_ran_and_resets():
    import asyncio
    import time

    from bench.load_server import LoopLag

    lag = LoopLag(period=0.005)
    lag.start()
    await asyncio.sleep(0.05)
    time.sleep(0.03)  # noqa: ASYNC251 - blocking the loop on purpose: a timer must run late
    await asyncio.sleep(0.02)
    lag.stop()
    summary = lag.summary(reset=True)
    assert summary["lag_samples"] >= 3
    assert summary["lag_ms_max"] >= 20
    assert summary["lag_ms_p50"] <= summary["lag_ms_p95"] <= summary["lag_ms_max"]
    assert lag.summary(reset=False) == {"lag_samples": 0}
