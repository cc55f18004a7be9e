"""A recorded mediation: real SessionService + SQLite ledger, real MediaEngine, the conductor and
the recorder wired as server.py wires them, and real aiortc bots publishing VP8 and Opus."""

from __future__ import annotations

import array
import asyncio
import contextlib
import io
import math
from pathlib import Path

import av
import pytest

from bench.bot import Bot
from bench.clip import read_barcode, split_barcode
from media.engine import MediaConfig, MediaEngine
from recording.keys import DataKey, MasterKey
from recording.recorder import Recorder
from recording.sealed import open_sealed
from recording.writer import Store
from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService
from signaling.conductor import Conductor, media_key
from tests.integration.media.conftest import HOST

TONES = {"A": 440.0, "B": 1000.0}
COLORS = {"A": (220, 40, 40), "B": (40, 40, 220)}


async def until(predicate, within: float = 20.0, step: float = 0.05):
    """Poll ``predicate`` until it holds; AssertionError after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if value := predicate():
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {within} s")


class Recorded:
    def __init__(self, tmp: Path, segment_seconds: float, max_frames: int, store) -> None:
        self.data = tmp
        self.store = SqliteLedgerStore(tmp / "ledger.sqlite3")
        self.service = SessionService(self.store)
        self.bots: dict[str, Bot] = {}
        self.engine = MediaEngine(
            MediaConfig(ice_host_addresses=[HOST], connect_timeout=10.0),
            on_slots=lambda key, slots: (
                self.bots[key].set_slot_map(slots) if key in self.bots else None
            ),
        )
        self.master = MasterKey.load(tmp)
        kw = {"store": store} if store is not None else {}
        self.recorder = Recorder(
            tmp / "recordings",
            self.master,
            report=lambda session, raw: self.conductor.recorder_report(session, raw),
            request_keyframe=self.engine.request_keyframe,
            segment_seconds=segment_seconds,
            max_frames=max_frames,
            **kw,
        )

        async def emit(event, data, sid):
            return None

        self.conductor = Conductor(self.service, self.engine, emit, recorder=self.recorder)
        self.state = None
        self.ids: dict[str, str] = {}

    def run(self, actor: str, **raw):
        actor = self.ids.get(actor, actor)
        return self.service.execute(self.state.id, actor, decode_command(raw))

    async def session(self, kind: str, people: list[ParticipantSpec]) -> None:
        """Create the session, connect one bot per person (those in TONES publish), mark them
        connected."""
        self.state = self.service.create_session(
            kind, actor="staff:test", title="Recorded", case_number=None, participants=people
        )
        self.ids = {p.name: p.id for p in self.state.participants.values()}
        for name in self.ids:
            key = media_key(self.state.id, self.ids[name])
            bot = Bot(key, slots=2, color=COLORS.get(name), tone_hz=TONES.get(name))
            self.bots[key] = bot
            answer = await self.conductor.accept_offer(
                self.state.id, self.ids[name], await bot.create_offer()
            )
            await bot.accept_answer(answer)
            bot.set_slot_map(self.conductor.slot_map(self.state.id, self.ids[name]))
        for bot in self.bots.values():
            await bot.wait_connected()
        for name in self.ids:
            self.run("system", type="connect", participant=self.ids[name])

    async def mediation(self) -> None:
        """Mediator M (subscribes only), parties A and B (publish), both admitted."""
        await self.session(
            "mediation",
            [
                ParticipantSpec("M", "mediator"),
                ParticipantSpec("A", "party", "A"),
                ParticipantSpec("B", "party", "B"),
            ],
        )
        for name in ("A", "B"):
            self.run(name, type="record_consent", topic="online_mediation", given=True)
            self.run(name, type="record_consent", topic="session_rules", given=True)
            self.run("M", type="admit", participant=self.ids[name])

    def bot(self, name: str) -> Bot:
        return self.bots[media_key(self.state.id, self.ids[name])]

    def events(self, type_: str) -> list:
        return [e for e in self.service.events(self.state.id) if e.type == type_]

    def directory(self) -> Path:
        return self.recorder.root / self.state.id

    def open_segment(self, name: str) -> bytes:
        key = DataKey.for_session(self.master, self.directory(), self.state.id)
        return open_sealed(key, (self.directory() / name).read_bytes())[1]

    async def settled(self) -> None:
        """Every closed segment written and its record in the ledger."""
        await until(
            lambda: (
                self.recorder.writer.pending == 0
                and all(
                    p.handle is None
                    for s in self.recorder.sessions.values()
                    for p in s.people.values()
                )
                and self.recorder.writer.segments_written == len(self.events("recording.segment"))
            )
        )
        await self.conductor.drain()


@pytest.fixture
async def recorded_factory(tmp_path):
    made: list[Recorded] = []

    async def make(
        segment_seconds: float = 4.0, max_frames: int = 2000, store: Store | None = None
    ):
        r = Recorded(tmp_path, segment_seconds, max_frames, store)
        made.append(r)
        await r.engine.start()
        r.recorder.start()
        return r

    yield make
    for r in made:
        for bot in r.bots.values():
            with contextlib.suppress(Exception):
                await bot.close()
        await r.recorder.aclose()
        await r.conductor.drain()
        await r.engine.close()
        r.store.close()


def decode(webm: bytes) -> dict:
    """Decode a segment with PyAV: video frames, barcodes seen, audio seconds, tone power."""
    out = {"video": 0, "tags": set(), "audio_s": 0.0, "samples": array.array("f")}
    with av.open(io.BytesIO(webm)) as c:
        for frame in c.decode(video=0):
            out["video"] += 1
            read = read_barcode(frame)
            if read is not None:
                out["tags"].add(split_barcode(read[0])[0])
    with av.open(io.BytesIO(webm)) as c:
        for frame in c.decode(audio=0):
            out["audio_s"] += frame.samples / frame.sample_rate
            if len(out["samples"]) < 48000:
                out["samples"].frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    return out


def tone_power(samples, hz: float, rate: int = 48000) -> float:
    """Goertzel: the power of one frequency in the samples (no numpy on the server)."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2
