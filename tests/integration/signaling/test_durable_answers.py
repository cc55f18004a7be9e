"""Durable before acknowledged: the ledger syncs in groups off the event loop, and no answer — a
socket.io reply or an HTTP response — leaves before the events it appended are on disk."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest

import rooms.ledger
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until


class DiskGate:
    """Holds the ledger's background fdatasync until released (the disk "is slow")."""

    def __init__(self, monkeypatch) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        real = rooms.ledger.os.fdatasync

        def gated(fd):
            self.entered.set()
            self.open.wait(30)
            return real(fd)

        monkeypatch.setattr(rooms.ledger.os, "fdatasync", gated)


async def test_a_command_is_acknowledged_only_once_it_is_on_disk(running, monkeypatch):
    state = running.mediation(parties=1)
    _, tok = running.token(state, "party")
    sio, _ = await running.client(tok)
    gate = DiskGate(monkeypatch)
    replies: list = []
    before = running.service.state(state.id).seq
    await sio.emit(
        "command",
        {"v": 1, "cmd": {"type": "record_consent", "topic": "session_rules", "given": True}},
        namespace=NAMESPACE,
        callback=replies.append,
    )
    # the event is appended (the loop did not wait on the disk) while the sync is held
    await until(lambda: running.service.state(state.id).seq > before and gate.entered.is_set())
    with pytest.raises(
        AssertionError
    ):  # a window: a reply now would be an unsynced acknowledgement
        await until(lambda: replies, timeout=1.0)
    gate.open.set()
    await until(lambda: replies)
    assert replies[0]["ok"] is True


async def test_an_http_answer_waits_for_the_disk_too(running, monkeypatch):
    """Every HTTP answer passes the same barrier (one middleware), so a route that appended
    cannot answer before its events are on disk; shown with an append still being synced."""
    state = running.mediation(parties=1)
    sio, _ = await running.client(running.token(state, "party")[1])
    gate = DiskGate(monkeypatch)
    consent = {"type": "record_consent", "topic": "session_rules", "given": True}
    await sio.emit("command", {"v": 1, "cmd": consent}, namespace=NAMESPACE)
    await until(gate.entered.is_set)
    answered: list[int] = []

    async def fetch():
        async with aiohttp.ClientSession() as http, http.get(running.url + "/healthz") as resp:
            answered.append(resp.status)

    task = asyncio.create_task(fetch())
    with pytest.raises(AssertionError):  # a window: an answer now would overtake the disk
        await until(lambda: answered, timeout=1.0)
    gate.open.set()
    await asyncio.wait_for(task, 30)
    assert answered == [200]
