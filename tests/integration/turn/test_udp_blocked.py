"""A participant behind a network that blocks all UDP still joins, with media both ways.

The test builds that network itself: a network namespace whose nftables firewall drops every
UDP datagram in and out, joined to this machine by a veth pair. Parley (a real server process),
coturn (a real ``turnserver``, TURN/TCP and TURN/TLS with a self-signed certificate) and the
mediator (an aiortc bot) are in the root namespace; the party is an aiortc client inside the
namespace (tests/support/netns_bot.py) that gets its ``iceServers`` from the welcome. The only
way its media can reach Parley is a TURN allocation over TCP or TLS; the test checks that the
nominated candidate is the relay, that the firewall did drop UDP, and that pictures arrive on
both sides (read from their barcodes, not just counted as packets).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys

import pytest
import socketio

from bench.bot import Bot, _assign_tag
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until
from tests.support.netns import UdpBlockedNetns, entered_or_skip
from tests.support.netns_bot import read_until
from tests.support.procs import ROOT, Coturn, self_signed
from tests.support.server_proc import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not shutil.which("turnserver"),
        reason="turnserver missing: scripts/setup.sh --test installs coturn",
    ),
]
SECRET = "udp-blocked-turn-secret"
CONSENTS = ("online_mediation", "session_rules")
WITHIN = 90  # seconds for each state to be reached on a loaded two-core machine


@pytest.fixture
def netns():
    yield from entered_or_skip(UdpBlockedNetns)


async def join_mediator(url: str, token: str):
    sio = socketio.AsyncClient(reconnection=False)
    welcome = asyncio.get_running_loop().create_future()
    sio.on("welcome", lambda m: welcome.done() or welcome.set_result(m), namespace=NAMESPACE)
    await sio.connect(url, namespaces=[NAMESPACE], auth={"token": token}, transports=["websocket"])
    msg = await asyncio.wait_for(welcome, 15)
    bot = Bot(msg["participant"], slots=msg["slots"], color=(200, 30, 30), size=(160, 120))
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=30
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda m: bot.set_slot_map(m["slots"]), namespace=NAMESPACE)
    await bot.wait_connected(30)
    return msg["participant"], sio, bot


# 2026-12-02: the tls case failed once inside a full run (the party got the mediator's video
# over the relay; the mediator saw none of the party's in 90 s) and passed alone 3 of 3; the
# cause was not found. One rerun, as the other tests known to fail now and then under load.
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize("turn", ["tcp", "tls"])
async def test_udp_blocked_participant_joins_over_turn(tmp_path, netns, turn):
    tls = self_signed(tmp_path, [netns.host_ip]) if turn == "tls" else None
    coturn = Coturn(
        tmp_path / "coturn", SECRET, listen=netns.host_ip, relay=netns.host_ip, tls=tls
    ).start()
    server = ServerProcess(
        tmp_path / "data",
        "--host",
        netns.host_ip,
        env={
            "PARLEY_ICE_HOST_ADDRESSES": netns.host_ip,
            "PARLEY_TURN_SECRET": SECRET,
            "PARLEY_TURN_URLS": ",".join(coturn.url(t) for t in ("udp", "tcp", turn)),
        },
    )
    party = mediator_sio = mediator = None
    try:
        server.start(timeout=60)
        url = server.links["mediator"][0].split("/j/")[0]
        token = {role: [u.split("/j/")[1] for u in urls] for role, urls in server.links.items()}
        mid, mediator_sio, mediator = await join_mediator(url, token["mediator"][0])

        env = {"PYTHONPATH": str(ROOT)}
        if tls:
            env["SSL_CERT_FILE"] = str(tls[0])  # the client trusts the self-signed TURN cert
        argv = [sys.executable, "-m", "tests.support.netns_bot", url, token["party"][0]]
        argv += ["--turn", turn, "--peer", mid] + [a for c in CONSENTS for a in ("--consent", c)]
        party = await asyncio.create_subprocess_exec(
            *netns.exec(["env", *(f"{k}={v}" for k, v in env.items()), *argv]),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        first = await read_until(party, lambda line: "participant" in line, WITHIN)
        pid = first["participant"]
        assert first["ice_servers"] == 1  # the welcome carried TURN credentials for it
        _assign_tag(pid)  # the mediator's bot reads the party's barcodes
        await read_until(party, lambda line: "connection" in line, WITHIN)  # offer answered
        reply = await mediator_sio.call(
            "command",
            {"v": 1, "cmd": {"type": "admit", "participant": pid}},
            namespace=NAMESPACE,
            timeout=10,
        )
        assert reply["ok"], reply

        line = await read_until(
            party,
            lambda line: line.get("frames", {}).get(mid, 0) > 10 and line["local_candidate"],
            WITHIN,
        )
        assert line["connection"] == "connected"
        assert line["local_candidate"] == "relay", line
        await until(lambda: mediator.frames_from(pid) > 10, WITHIN, 0.1)
        assert netns.udp_dropped() > 0  # the client did try UDP, and the firewall dropped it
        # coturn served an allocation to this participant's time-limited username
        assert f":{pid}" in coturn.output()
        assert SECRET not in coturn.output() and SECRET not in server.output()
    finally:
        if party is not None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError):
                party.stdin.close()
            try:
                await asyncio.wait_for(party.wait(), 15)
            except TimeoutError:
                party.kill()
                await party.wait()
        if mediator is not None:
            await mediator.close()
        if mediator_sio is not None and mediator_sio.connected:
            await mediator_sio.disconnect()
        server.stop()
        coturn.stop()
