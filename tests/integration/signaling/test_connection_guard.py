"""What an unauthenticated peer may cost: real sockets on 127.0.0.1 against a real server, with
the guard's deadlines shortened so that each case takes about a second."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from server import SIO, Config, JsonFormatter, create_app
from signaling import guard
from tests.integration.signaling.conftest import Running, until

EIO_WS = "/socket.io/?EIO=4&transport=websocket"


def eio_sockets(running) -> int:
    """Engine.IO connections the server holds open."""
    return len(running.app[SIO].eio.sockets)


async def raw_ws(http, running):
    """An engine.io websocket that never joins a namespace; waits for the server's open packet."""
    ws = await http.ws_connect(running.url + EIO_WS)
    first = await asyncio.wait_for(ws.receive(), 5)
    assert first.type == aiohttp.WSMsgType.TEXT and first.data.startswith("0")
    return ws


async def test_connections_that_do_not_authenticate_are_closed(running, monkeypatch):
    monkeypatch.setattr(guard, "AUTH_DEADLINE_S", 0.5)
    state = running.mediation()
    _, token = running.token(state, "party")
    client, _ = await running.client(token)
    async with aiohttp.ClientSession() as http:
        raws = [await raw_ws(http, running) for _ in range(10)]
        assert eio_sockets(running) == 11
        await until(lambda: eio_sockets(running) == 1, timeout=5)
        for ws in raws:  # each client sees its websocket closed (after a packet or two)
            seen = []
            while len(seen) < 5 and not ws.closed:
                seen.append((await asyncio.wait_for(ws.receive(), 5)).type)
            assert ws.closed, seen
        assert client.connected  # the authenticated one outlived the deadline
        # Their TCP connections are closed too, not left for the peer to close.
        await until(lambda: len(running.runner.server.connections) == 1, timeout=5)


async def test_unauthenticated_connections_per_address_are_capped(running, monkeypatch, caplog):
    monkeypatch.setattr(guard, "PENDING_PER_ADDRESS", 3)
    caplog.set_level(logging.INFO)
    state = running.mediation()
    _, token = running.token(state, "party")
    async with aiohttp.ClientSession() as http:
        raws = [await raw_ws(http, running) for _ in range(3)]
        for _ in range(2):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await raw_ws(http, running)
        assert eio_sockets(running) == 3
        assert len([r for r in caplog.records if "too many" in r.getMessage()]) == 1
        await raws[0].close()
        await until(lambda: eio_sockets(running) == 2, timeout=5)
        client, _ = await running.client(token)  # room for one again; once in, it is not pending
        assert client.connected
        assert (await raw_ws(http, running)).closed is False


async def test_malformed_packets_close_the_connection_with_one_log_line(running, caplog):
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(http, running)
        for _ in range(200):
            if ws.closed:
                break
            await ws.send_str("4garbage")
        await until(lambda: eio_sockets(running) == 0, timeout=5)
    noisy = [r for r in caplog.records if r.exc_info or r.name.startswith(("engineio", "socketio"))]
    assert noisy == []
    bad = [r for r in caplog.records if r.name == "parley.guard"]
    assert len(bad) == 1
    line = JsonFormatter().format(bad[0])
    assert "\n" not in line and len(line) < 600
    assert json.loads(line)["error"].startswith("ValueError")


async def test_slow_request_body_gets_408(running, monkeypatch):
    monkeypatch.setattr(guard, "BODY_DEADLINE_S", 0.5)
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    reply = asyncio.ensure_future(reader.read(2048))
    for _ in range(50):  # a byte every 0.1 s: would take 10 s
        if reply.done():
            break
        writer.write(b"a")
        await asyncio.sleep(0.1)
    data = await asyncio.wait_for(reply, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408") and b'"too_slow"' in data


@pytest.fixture
async def guarded(tmp_path, monkeypatch):
    """The server as ``serve`` runs it (the runner with the guard's options), header deadline
    shortened."""
    monkeypatch.setattr(guard, "HEADER_DEADLINE_S", 0.5)
    app = create_app(Config(data_dir=tmp_path / "data", demo=False, log_format="text"))
    runner = web.AppRunner(app, access_log=None, **guard.runner_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    await runner.cleanup()


async def test_slow_headers_are_cut(guarded):
    host, port = guarded.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    closed = asyncio.ensure_future(reader.read())  # b"" once the server closes
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    for byte in request:  # a byte every 0.05 s: the headers would take 6 s
        if closed.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(closed, 5) == b""
    writer.close()
    await until(lambda: not guarded.runner.server.connections, timeout=5)
    # A prompt request on the same server is served.
    async with aiohttp.ClientSession() as http, http.get(guarded.url + "/healthz") as r:
        assert r.status == 200
