"""One public port for HTTPS and TURN over TLS (docs/operations.md, "One port 443"), with real
processes on loopback: nginx from deploy/nginx/parley-443.stream.template and
parley.conf.template, coturn with its own TLS listener and certificate, a Parley server.

Through that ONE port: the TLS handshake lands where the rules say (read from which certificate
answers: nginx's and coturn's differ), an HTTPS request reaches Parley with the client's own
address, TURN/TLS allocations succeed by SNI and without SNI, and a real call runs with one
participant's aiortc peer forced to relay-only on the ``turns:`` URL of that port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl

import aiohttp
import pytest
import socketio
from aioice.turn import create_turn_endpoint
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from cryptography import x509
from cryptography.x509.oid import NameOID

import bench.bot
from bench.bot import Bot, _assign_tag
from signaling.namespace import NAMESPACE
from signaling.turn import TurnCredentials
from tests.integration.deploy.shared443 import SharedPortNginx, stream_module
from tests.integration.signaling.conftest import until
from tests.support.procs import Coturn, self_signed
from tests.support.server_proc import ServerProcess

MISSING = [b for b in ("turnserver",) if not shutil.which(b)]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bool(MISSING), reason="scripts/setup.sh --test installs coturn"),
    pytest.mark.skipif(
        stream_module() is None,
        reason="nginx without the stream module: scripts/setup.sh --test installs "
        "nginx and libnginx-mod-stream",
    ),
]
SECRET = "shared-443-turn-secret"
TURN_NAME = "localhost"  # the host name only TURN uses here; it resolves to 127.0.0.1
CONSENTS = ("online_mediation", "session_rules")


@pytest.fixture
def stack(tmp_path):
    """coturn (TLS with its own certificate), Parley, and the shared-port nginx in front."""
    web_cert = self_signed(tmp_path, ["127.0.0.1"], name="parley-web")
    turn_cert = self_signed(tmp_path, ["127.0.0.1"], name="parley-turn")
    daemons = []
    try:
        turn = Coturn(tmp_path / "coturn", SECRET, tls=turn_cert)
        daemons.append(turn.start())
        nginx = SharedPortNginx(tmp_path / "nginx")
        turns_url = f"turns:{TURN_NAME}:{nginx.port}?transport=tcp"
        server = ServerProcess(
            tmp_path / "data",
            env={
                "PARLEY_PUBLIC_URL": f"https://127.0.0.1:{nginx.port}",
                "PARLEY_TRUSTED_PROXIES": "127.0.0.1",
                "PARLEY_TURN_SECRET": SECRET,
                "PARLEY_TURN_URLS": turns_url,
            },
        )
        daemons.append(server)
        server.start(timeout=60)
        nginx.start(
            upstream=server.url.removeprefix("http://"),
            turn_tls=f"127.0.0.1:{turn.tls_port}",
            turn_name=TURN_NAME,
            cert=web_cert[0],
            key=web_cert[1],
        )
        daemons.append(nginx)
        yield {
            "turn": turn,
            "server": server,
            "nginx": nginx,
            "turns_url": turns_url,
            "turn_cert": turn_cert[0],
            "web_cert": web_cert[0],
        }
    finally:
        for d in reversed(daemons):
            d.stop()


def answered_by(port: int, sni: str | None, alpn: tuple[str, ...] | None) -> str:
    """The common name of the certificate that answers a ClientHello with this SNI and ALPN
    on the shared port: ``parley-web`` (nginx's HTTPS block) or ``parley-turn`` (coturn)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def http_session(cafile, local: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A client that offers ALPN http/1.1, as browsers and curl do (aiohttp does not by
    itself), trusting the test certificate."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, local_addr=(local, 0)))


async def test_one_port_routes_https_to_parley_and_turn_tls_to_coturn(stack):
    port = stack["nginx"].port
    routes = {
        # (SNI, ALPN): expected backend
        (TURN_NAME, None): "parley-turn",  # Chromium's TURN/TLS: the TURN host name as SNI
        (TURN_NAME, ("h2", "http/1.1")): "parley-turn",  # the TURN name wins over ALPN
        ("mediation.example.org", ("h2", "http/1.1")): "parley-web",  # a browser
        (None, ("http/1.1",)): "parley-web",  # curl to an address
        (None, ("h2", "http/1.1")): "parley-web",
        (None, None): "parley-turn",  # a TURN URL with an IP address: no SNI, no ALPN
        ("mediation.example.org", None): "parley-turn",  # TURN sharing the web's host name
        (None, ("stun.turn",)): "parley-turn",  # RFC 7443
    }
    got = {key: await asyncio.to_thread(answered_by, port, key[0], key[1]) for key in routes}
    assert got == routes

    # HTTPS reaches Parley, and Parley's proxy knows the real client (127.0.0.2 here) from
    # the PROXY protocol header, not the front's loopback address
    async with (
        http_session(stack["web_cert"], local="127.0.0.2") as http,
        http.get(f"https://127.0.0.1:{port}/healthz") as resp,
    ):
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
        assert "max-age" in resp.headers.get("Strict-Transport-Security", "")
    await until(lambda: any("/healthz" in line for line in stack["nginx"].access_log()), 10)
    [line] = [ln for ln in stack["nginx"].access_log() if "/healthz" in ln]
    assert line.startswith("127.0.0.2 "), line

    # an invitation opens through the front, and its token never reaches the access log
    token = stack["server"].links["party"][0].split("/j/")[1]
    async with (
        http_session(stack["web_cert"]) as http,
        http.get(f"https://127.0.0.1:{port}/j/{token}") as resp,
    ):
        assert resp.status == 200 and "integrity=" in await resp.text()
    await until(lambda: any("/j/[token]" in line for line in stack["nginx"].access_log()), 10)
    assert token not in "\n".join(stack["nginx"].access_log())

    # TURN/TLS allocations through the same port, with issued credentials: by SNI (the TURN
    # host name) and without SNI (an address)
    creds = TurnCredentials(SECRET, [stack["turns_url"]]).issue("p-shared-443")
    ctx = ssl.create_default_context(cafile=str(stack["turn_cert"]))
    for host in (TURN_NAME, "127.0.0.1"):
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(host, port),
            username=creds.username,
            password=creds.credential,
            transport="tcp",
            ssl=ctx,
        )
        assert relay.get_extra_info("sockname")[1] > 0
        relay.close()
    # a wrong credential is refused by coturn behind the front, not by the front
    with pytest.raises(Exception, match="401"):
        await create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(TURN_NAME, port),
            username=creds.username,
            password="forged",
            transport="tcp",
            ssl=ctx,
        )
    assert ":p-shared-443" in stack["turn"].output()
    # the front logged each connection with the client's address and where it went
    await until(
        lambda: sum("to=parley_turn_tls" in ln for ln in stack["nginx"].stream_log()) >= 3, 10
    )
    assert SECRET not in stack["turn"].output() + stack["server"].output()


async def join(url: str, token: str, color, consents=(), session=None, relay_only=False):
    sio = socketio.AsyncClient(reconnection=False, http_session=session)
    welcome = asyncio.get_running_loop().create_future()
    sio.on("welcome", lambda m: welcome.done() or welcome.set_result(m), namespace=NAMESPACE)
    await sio.connect(url, namespaces=[NAMESPACE], auth={"token": token}, transports=["websocket"])
    msg = await asyncio.wait_for(welcome, 15)
    for topic in consents:
        cmd = {"type": "record_consent", "topic": topic, "given": True}
        reply = await sio.call("command", {"v": 1, "cmd": cmd}, namespace=NAMESPACE, timeout=10)
        assert reply["ok"], reply
    servers = []
    if relay_only:
        servers = [
            RTCIceServer(s["urls"], s.get("username"), s.get("credential"))
            for s in msg["iceServers"]
        ]
    bot = make_bot(msg, color, servers, relay_only)
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=30
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda m: bot.set_slot_map(m["slots"]), namespace=NAMESPACE)
    return msg, sio, bot


def make_bot(msg, color, servers, relay_only: bool) -> Bot:
    """A bench bot; relay-only makes its ICE agent gather and use TURN relay candidates only,
    as a browser behind a firewall that passes nothing but TCP 443 ends up doing."""
    if not relay_only:
        return Bot(msg["participant"], slots=msg["slots"], color=color, size=(160, 120))
    original = bench.bot.RTCConfiguration

    def relay_config(**kw):
        return RTCConfiguration(**kw, iceTransportPolicy=RTCIceTransportPolicy.RELAY)

    bench.bot.RTCConfiguration = relay_config
    try:
        return Bot(
            msg["participant"],
            slots=msg["slots"],
            color=color,
            size=(160, 120),
            ice_servers=servers,
        )
    finally:
        bench.bot.RTCConfiguration = original


def nominated_local_type(bot: Bot) -> str | None:
    transport = bot.pc.getTransceivers()[0].sender.transport.transport
    pairs = transport.iceGatherer._connection._nominated
    return next(iter(pairs.values())).local_candidate.type if pairs else None


async def test_a_relayed_call_through_the_shared_port(stack, monkeypatch):
    server, nginx = stack["server"], stack["nginx"]
    # aioice checks coturn's certificate against the system's trust store: trust the test one
    monkeypatch.setenv("SSL_CERT_FILE", str(stack["turn_cert"]))
    public = f"https://127.0.0.1:{nginx.port}"
    tokens = {role: [u.split("/j/")[1] for u in urls] for role, urls in server.links.items()}
    bots, sockets = [], []
    session = http_session(stack["web_cert"])
    try:
        # the mediator directly on Parley; the party through the shared port, relay-only
        m_msg, m_sio, m_bot = await join(server.url, tokens["mediator"][0], (200, 30, 30))
        sockets.append(m_sio)
        bots.append(m_bot)
        a_msg, a_sio, a_bot = await join(
            public, tokens["party"][0], (30, 200, 30), CONSENTS, session, relay_only=True
        )
        sockets.append(a_sio)
        bots.append(a_bot)
        # the page's iceServers offer TURN over TLS on the shared port
        [ice] = a_msg["iceServers"]
        assert ice["urls"] == [stack["turns_url"]]
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
        await until(lambda: m_bot.frames_from(aid) > 10 and a_bot.frames_from(mid) > 10, 90, 0.1)
        assert nominated_local_type(a_bot) == "relay"
        assert f":{aid}" in stack["turn"].output()  # coturn allocated for this participant
        # socket.io and TURN both went through the one port; the front logs a connection when
        # it ends
        for bot in bots:
            await bot.close()
        bots.clear()
        for sio in sockets:
            await sio.disconnect()

        def routed(backend: str, sni: str) -> bool:
            return any(f'sni="{sni}"' in ln and f"to={backend}" in ln for ln in nginx.stream_log())

        await until(lambda: routed("parley_turn_tls", TURN_NAME) and routed("parley_https", ""), 15)
    finally:
        for bot in bots:
            await bot.close()
        for sio in sockets:
            if sio.connected:
                await sio.disconnect()
        await session.close()
