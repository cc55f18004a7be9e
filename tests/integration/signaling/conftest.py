from __future__ import annotations

import asyncio

import pytest
import socketio
from aiohttp import web

from rooms.service import ParticipantSpec
from server import CONFIG, SERVICE, SIGNER, Config, create_app
from signaling.namespace import NAMESPACE


class Running:
    def __init__(self, app: web.Application, runner: web.AppRunner, url: str) -> None:
        self.app, self.runner, self.url = app, runner, url
        self.service = app[SERVICE]
        self.signer = app[SIGNER]
        self.clients: list[socketio.AsyncClient] = []

    def mediation(self, parties: int = 2):
        specs = [ParticipantSpec(name="Mediator M", role="mediator")] + [
            ParticipantSpec(name=f"Party {chr(65 + i)}", role="party", side=chr(65 + i))
            for i in range(parties)
        ]
        return self.service.create_session(
            "mediation", actor="staff:test", title="Test", case_number="T-1", participants=specs
        )

    def token(self, state, role: str, index: int = 0, **kw) -> tuple[str, str]:
        """(participant id, invitation token) of the index-th participant with this role."""
        people = [p for p in state.participants.values() if p.role == role]
        p = people[index]
        return p.id, self.signer.issue(state.id, p.id, p.role, ttl=kw.pop("ttl", 600), **kw)

    async def client(self, token, *, wait_welcome=True):
        """A connected socket.io client; returns (client, inbox) where inbox collects events."""
        sio = socketio.AsyncClient(reconnection=False)
        inbox: dict[str, list] = {"welcome": [], "state": [], "slots": [], "error": [], "hint": []}
        for name in inbox:
            sio.on(
                name, (lambda n: lambda data=None: inbox[n].append(data))(name), namespace=NAMESPACE
            )
        await sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth={"token": token},
            transports=["websocket"],
            wait_timeout=5,
        )
        self.clients.append(sio)
        if wait_welcome:
            await until(lambda: inbox["welcome"])
        return sio, inbox


async def until(predicate, timeout: float = 10.0, interval: float = 0.02):  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.1f}s")


@pytest.fixture
async def running(tmp_path):
    config = Config(data_dir=tmp_path / "data", demo=False, log_format="text")
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    run = Running(app, runner, f"http://127.0.0.1:{port}")
    assert app[CONFIG] is config
    yield run
    for c in run.clients:
        if c.connected:
            await c.disconnect()
    await runner.cleanup()
