"""SIGKILL a real server while it records: at most the open segments are lost, every recorded
segment is intact, the restart records the downtime as a gap, and recording resumes."""

from __future__ import annotations

import asyncio
import sys

import pytest
import socketio

from bench.bot import Bot
from recording.keys import MasterKey
from recording.manifest import manifest, verify_files
from recording.sealed import MAGIC
from rooms.ledger import SqliteLedgerStore, verify_chain
from signaling.namespace import NAMESPACE
from tests.integration.media.conftest import HOST
from tests.integration.recording.conftest import until
from tests.support.server_proc import ROOT, ServerProcess

pytestmark = pytest.mark.slow

PEOPLE = {"mediator": (None, None), "party": ((220, 40, 40), 440.0)}


async def call(sio, event, payload):
    reply = await sio.call(event, payload, namespace=NAMESPACE, timeout=10)
    assert reply.get("ok"), (event, payload, reply)
    return reply


class Phone:
    """A socket.io client plus an aiortc bot: one participant of the running server."""

    def __init__(self, url: str, token: str, name: str, color, tone) -> None:
        self.url, self.token, self.name, self.color, self.tone = url, token, name, color, tone
        self.sio = socketio.AsyncClient(reconnection=False)
        self.welcome: list = []
        self.bot: Bot | None = None
        self.sio.on("welcome", lambda data=None: self.welcome.append(data), namespace=NAMESPACE)
        self.sio.on("slots", lambda data=None: self._slots(data), namespace=NAMESPACE)

    def _slots(self, data) -> None:
        if self.bot is not None:
            self.bot.set_slot_map(data["slots"])

    async def join(self) -> None:
        await self.sio.connect(
            self.url, namespaces=[NAMESPACE], auth={"token": self.token}, transports=["websocket"]
        )
        await until(lambda: self.welcome)
        self.id = self.welcome[0]["participant"]
        self.bot = Bot(
            self.name, slots=self.welcome[0]["slots"], color=self.color, tone_hz=self.tone
        )
        reply = await call(self.sio, "offer", {"v": 1, "sdp": await self.bot.create_offer()})
        await self.bot.accept_answer(reply["sdp"])
        await self.bot.wait_connected(20)

    async def command(self, **cmd) -> dict:
        return await call(self.sio, "command", {"v": 1, "cmd": cmd})

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        await self.sio.disconnect()


def read_events(db, session=None):
    store = SqliteLedgerStore(db)
    try:
        session = session or store.session_ids()[0]
        return session, store.read(session)
    finally:
        store.close()


async def phones(server: ServerProcess, suffix: str) -> dict[str, Phone]:
    token = {role: [u.rsplit("/j/", 1)[1] for u in urls] for role, urls in server.links.items()}
    out = {"M": Phone(server.url, token["mediator"][0], "crash-M" + suffix, *PEOPLE["mediator"])}
    out["A"] = Phone(server.url, token["party"][0], "crash-A" + suffix, *PEOPLE["party"])
    for phone in out.values():
        await phone.join()
    return out


async def test_sigkill_while_recording_loses_at_most_the_open_segment(tmp_path):
    data = tmp_path / "data"
    env = {
        "PARLEY_ICE_HOST_ADDRESSES": HOST,
        "PARLEY_RECORDING_SEGMENT_SECONDS": "1.5",
        "PARLEY_EVENT_LOOP": "asyncio",
    }
    db = data / "ledger.sqlite3"
    server = ServerProcess(data, env=env).start()
    people: dict[str, Phone] = {}
    try:
        people = await phones(server, "1")
        m, a = people["M"], people["A"]
        for topic in ("online_mediation", "session_rules"):
            await a.command(type="record_consent", topic=topic, given=True)
        await m.command(type="admit", participant=a.id)
        for phone in (m, a):
            await phone.command(type="record_consent", topic="recording", given=True)
        await m.command(type="start_recording")
        await until(
            lambda: sum(e.type == "recording.segment" for e in read_events(db)[1]) >= 3, within=60
        )
        server.stop(sig_kill=True)
    finally:
        for phone in people.values():
            await phone.close()
        server.stop()

    session, events = read_events(db)
    assert verify_chain(events) == []
    before = manifest(events)
    directory = data / "recordings" / session
    problems = verify_files(before, directory)
    # only the segments being written at the kill may be on disk without their record
    assert len(problems) <= 1 and all("not in the ledger" in p for p in problems), problems
    for path in directory.iterdir():  # nothing unencrypted, temporary files included
        assert path.name == "datakey.json" or path.read_bytes()[:8] == MAGIC, path.name
    assert (data / "recording-master.key").stat().st_mode & 0o777 == 0o600
    MasterKey.load(data)  # the key file is readable after the crash
    last_end = max(s["wall_end"] for s in before["segments"])

    server = ServerProcess(data, env=env).start()
    try:
        people = await phones(server, "2")
        m, a = people["M"], people["A"]
        _, events = read_events(db, session)
        [gap] = [e for e in events if e.type == "recording.gap"]
        assert gap.data["reason"] == "node_restart" and gap.actor == "system"
        assert gap.data["wall_start"] >= last_end and gap.data["wall_end"] > gap.data["wall_start"]
        # recording was still on: it resumes as the phones come back, numbering on
        count = len(before["segments"])
        await until(
            lambda: sum(e.type == "recording.segment" for e in read_events(db)[1]) >= count + 2,
            within=60,
        )
        await m.command(type="stop_recording")
    finally:
        for phone in people.values():
            await phone.close()
        server.stop()
    _, events = read_events(db, session)
    after = manifest(events)
    assert verify_files(after, directory) == [] or all(
        "not in the ledger" in p for p in verify_files(after, directory)
    )
    resumed = after["segments"][count:]
    a_indexes = [s["index"] for s in after["segments"] if s["participant"] == a.id]
    assert len(set(a_indexes)) == len(a_indexes) and resumed
    assert all(s["wall_start"] >= gap.data["wall_end"] - 1 for s in resumed)
    verify = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "ledger",
        "verify",
        session,
        "--data-dir",
        str(data),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await verify.communicate()
    assert verify.returncode == 0, output.decode()
