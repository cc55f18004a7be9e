"""The deployment's topology with real processes on loopback, from the files in deploy/:
nginx (deploy/nginx/parley.conf.template) terminating TLS with a generated certificate in front
of a Parley node, coturn started from deploy/coturn/turnserver.conf, redis-server from
deploy/redis/redis.conf. Two aiortc bots join a mediation through https://127.0.0.1:<nginx>
(socket.io over the proxied WebSocket) and see each other's pictures; the welcome's TURN
credentials allocate on that coturn over TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl

import aiohttp
import pytest
import redis
import socketio
from aioice.turn import create_turn_endpoint

from bench.bot import Bot, _assign_tag
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until
from tests.support.procs import ROOT, Coturn, Nginx, Redis, free_port, self_signed
from tests.support.server_proc import ServerProcess

MISSING = [b for b in ("nginx", "turnserver", "redis-server") if not shutil.which(b)]
if MISSING and shutil.which("/usr/sbin/nginx"):
    MISSING = [b for b in MISSING if b != "nginx"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(MISSING), reason=f"scripts/setup.sh --test installs {MISSING}"),
]
SECRET = "deploy-topology-turn-secret"
CONSENTS = ("online_mediation", "session_rules")


async def join(url: str, token: str, color, consents=()):
    sio = socketio.AsyncClient(reconnection=False, ssl_verify=False)
    welcome = asyncio.get_running_loop().create_future()
    sio.on("welcome", lambda m: welcome.done() or welcome.set_result(m), namespace=NAMESPACE)
    await sio.connect(url, namespaces=[NAMESPACE], auth={"token": token}, transports=["websocket"])
    msg = await asyncio.wait_for(welcome, 15)
    for topic in consents:
        cmd = {"type": "record_consent", "topic": topic, "given": True}
        reply = await sio.call("command", {"v": 1, "cmd": cmd}, namespace=NAMESPACE, timeout=10)
        assert reply["ok"], reply
    bot = Bot(msg["participant"], slots=msg["slots"], color=color, size=(160, 120))
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=30
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda m: bot.set_slot_map(m["slots"]), namespace=NAMESPACE)
    return msg, sio, bot


async def test_a_call_through_nginx_with_coturn_and_redis(tmp_path):
    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    daemons = []
    bots, sockets = [], []
    nginx = Nginx(tmp_path / "nginx", port=free_port())
    public = f"https://127.0.0.1:{nginx.port}"
    try:
        store = Redis(tmp_path / "redis")
        daemons.append(store.start())
        turn = Coturn(
            tmp_path / "coturn",
            SECRET,
            tls=(cert, key),
            base=ROOT / "deploy" / "coturn" / "turnserver.conf",
        )
        daemons.append(turn.start())
        server = ServerProcess(
            tmp_path / "data",
            env={
                "PARLEY_PUBLIC_URL": public,
                "PARLEY_TRUSTED_PROXIES": "127.0.0.1",
                "PARLEY_TURN_SECRET": SECRET,
                "PARLEY_TURN_URLS": f"{turn.url('udp')},{turn.url('tcp')},{turn.url('tls')}",
            },
        )
        daemons.append(server)
        server.start(timeout=60)
        daemons.append(nginx.start(upstream=server.url.removeprefix("http://"), cert=cert, key=key))

        # Redis runs with the deployment's durability settings
        r = redis.Redis(port=store.port)
        assert r.ping()
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "always"}
        r.close()

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{public}/healthz", ssl=False) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
                # the proxy is trusted: Parley knows the client came over HTTPS
                assert "max-age" in resp.headers.get("Strict-Transport-Security", "")
            async with http.get(f"{public}/metrics", ssl=False) as resp:
                assert resp.status == 403  # forwarded by the proxy: not "this machine"

        tokens = {role: [u.split("/j/")[1] for u in urls] for role, urls in server.links.items()}
        assert all(u.startswith(public + "/j/") for urls in server.links.values() for u in urls)
        m_msg, m_sio, m_bot = await join(public, tokens["mediator"][0], (200, 30, 30))
        sockets.append(m_sio)
        bots.append(m_bot)
        a_msg, a_sio, a_bot = await join(public, tokens["party"][0], (30, 200, 30), CONSENTS)
        sockets.append(a_sio)
        bots.append(a_bot)
        mid, aid = m_msg["participant"], a_msg["participant"]
        _assign_tag(mid)
        _assign_tag(aid)
        reply = await m_sio.call(
            "command",
            {"v": 1, "cmd": {"type": "admit", "participant": aid}},
            namespace=NAMESPACE,
            timeout=10,
        )
        assert reply["ok"], reply
        await until(lambda: m_bot.frames_from(aid) > 10 and a_bot.frames_from(mid) > 10, 60, 0.1)

        # the welcome's TURN credentials allocate on the deployment's coturn, over TLS
        [ice] = a_msg["iceServers"]
        assert ice["username"].endswith(":" + aid)
        ctx = ssl.create_default_context(cafile=str(cert))
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", turn.tls_port),
            username=ice["username"],
            password=ice["credential"],
            transport="tcp",
            ssl=ctx,
        )
        assert relay.get_extra_info("sockname")[1] >= 49152  # the deployment's relay range
        relay.close()
        assert SECRET not in turn.output() + server.output()

        # socket.io ran over the proxied WebSocket (nginx logs it when the connection ends)
        for sio in sockets:
            await sio.disconnect()
        log = nginx.workdir / "access.log"

        def upgrades():
            return [ln for ln in log.read_text().splitlines() if "transport=websocket" in ln]

        await until(lambda: len(upgrades()) >= 2, 10)
        assert all(" 101 " in line for line in upgrades()), upgrades()
    finally:
        for bot in bots:
            await bot.close()
        for sio in sockets:
            if sio.connected:
                await sio.disconnect()
        for d in reversed(daemons):
            d.stop()
