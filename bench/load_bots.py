"""The bench's bot process: whole rooms of publishing bots and subscriber probes.

    .venv/bin/python -m bench.load_bots '<json spec from bench/run_load.py>'

Publishers are bench/bot.py bots (a pre-encoded VP8 clip with a frame-number barcode, plus an
Opus tone, sent without encoding). Every subscriber is probed for, per publisher: frames, gaps
and reordering in the publisher's send sequence, time from join to first frame, and frame latency
(publisher's send time to the moment the frame's last packet reached the subscriber; all bots of
a room live in this process, so they share the send-time table and the clock).

Frames are recognised without decoding when the server forwards them unchanged (`verify:
bytes`): the encoded bytes of every clip frame are known. When the server re-encodes
(`verify: decode`) the probe decodes and reads the barcode.

Talks to bench/run_load.py in JSON lines: prints `ready`, then answers `mark` (start of the
measurement window) and `report` (figures since the mark) read from stdin, until `quit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import aioice.ice
import uvloop
from aiortc import RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from bench import bot as botmod
from bench import clip as clips
from bench.bot import Bot
from bench.janus_client import JanusSession
from bench.load_server import LoopLag
from media import passthrough

MARK_MEMORY = 512  # marker times kept per receiver (frames not yet released)


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, noting when each frame's last (marker) packet arrived.

    aiortc releases a frame only when the next frame's first packet arrives; the probe wants the
    moment the frame was complete, which is what a browser's receiver would act on.
    """

    def __init__(self, capacity: int, is_video: bool) -> None:
        super().__init__(capacity=capacity, is_video=is_video)
        self._marks: dict[int, float] = {}
        self.released: dict[int, float] = {}  # raw RTP timestamp -> completion (wall clock)

    def add(self, packet):
        if packet.marker:
            self._marks[packet.timestamp] = time.time()
            if len(self._marks) > MARK_MEMORY:
                self._marks.pop(next(iter(self._marks)))
        pli, frame = super().add(packet)
        if frame is not None:
            frame.complete_at = self._marks.pop(frame.timestamp, None) or time.time()
            self.released[frame.timestamp] = frame.complete_at
            if len(self.released) > MARK_MEMORY:
                self.released.pop(next(iter(self.released)))
        return pli, frame


class EncodedTap:
    """Stands in for a receiver's decoder queue: hands encoded frames to the probe, no decoding."""

    def __init__(self, on_frame) -> None:
        self._on_frame = on_frame
        self._done = threading.Event()

    def put(self, task) -> None:
        if task is None:
            self._done.set()
            return
        _codec, frame = task
        self._on_frame(frame.data, getattr(frame, "complete_at", None) or time.time())

    def get(self):
        self._done.wait()
        return None


@dataclass
class PairStats:
    """What one subscriber got from one publisher, in total and since the mark."""

    first_at: float | None = None  # monotonic
    last_seq: int | None = None
    frames: int = 0
    gaps: int = 0
    out_of_order: int = 0
    audio_frames: int = 0
    latencies: list[float] = field(default_factory=list)

    def mark(self) -> None:
        self.frames = self.gaps = self.out_of_order = self.audio_frames = 0
        self.latencies = []


class ProbeBot(Bot):
    """A Bot whose received media is counted by the probe (bytes or barcode)."""

    def __init__(self, *args, verify: str, frame_table: dict, **kw) -> None:
        super().__init__(*args, **kw)
        self.verify = verify
        self.frame_table = frame_table  # clip frame bytes -> (publisher name, clip index)
        self.pairs: dict[str, PairStats] = {}
        self.unknown_frames = 0
        self.joined_at: float | None = None
        self._buffers: dict[int, tuple[MarkerJitterBuffer, object]] = {}

    async def create_offer(self) -> str:
        sdp = await super().create_offer()
        for t in self.pc.getTransceivers()[2:]:
            slot, kind = self._slot_of_mid[t.mid]
            self._hook_receiver(slot, kind, t.receiver)
        return sdp

    def _hook_receiver(self, slot: int, kind: str, receiver) -> None:
        """Swap in the marker jitter buffer and, in bytes mode, the encoded-frame tap.

        Called before the connection is up: aiortc starts a receiver's decoder thread (which
        takes the queue then) only once DTLS is connected.
        """
        if kind == "video":
            old = receiver._RTCRtpReceiver__jitter_buffer
            jb = MarkerJitterBuffer(old.capacity, is_video=True)
            receiver._RTCRtpReceiver__jitter_buffer = jb
            self._buffers[slot] = (jb, receiver)
        if self.verify == "bytes":
            receiver._RTCRtpReceiver__decoder_queue = EncodedTap(self._tap(slot, kind))

    async def create_publish_offer(self) -> str:
        """Janus publisher: one sendonly VP8 video m-line, nothing to receive."""
        self.add_publishing_transceiver("video")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer_offer(self, sdp: str) -> str:
        """Janus subscriber: Janus offers the feed's streams; each video one becomes a slot."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        slot = 0
        for t in self.pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(botmod.vp8_codecs())
            self._hook_receiver(slot, t.kind, t.receiver)
            if t.kind == "video":
                slot += 1
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._answered_at = time.monotonic()
        return self.pc.localDescription.sdp

    def _tap(self, slot: int, kind: str):
        def on_frame(data: bytes, complete_at: float) -> None:
            if kind == "audio":
                self._count_audio(slot)
                return
            known = self.frame_table.get(data)
            if known is None:
                self.unknown_frames += 1
                return
            self._count(known[0], known[1], complete_at)

        return on_frame

    async def _read_video(self, slot, track) -> None:  # decode mode only
        jb, receiver = self._buffers[slot]
        mapper = receiver._RTCRtpReceiver__timestamp_mapper
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                raw = (frame.pts + (mapper._origin or 0)) % (1 << 32)
                complete_at = jb.released.pop(raw, None) or time.time()
                read = clips.read_barcode(frame)
                if read is None:
                    self.unknown_frames += 1
                    continue
                tag, index = clips.split_barcode(read[0])
                name = botmod._names_by_tag.get(tag)
                if name is None:
                    self.unknown_frames += 1
                    continue
                self._count(name, index, complete_at)

    async def _read_audio(self, slot, track) -> None:  # decode mode only
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self._count_audio(slot)

    def _count_audio(self, slot: int) -> None:
        name = self.slot_participants.get(slot)
        if name is not None:
            self.pairs.setdefault(name, PairStats()).audio_frames += 1

    def _count(self, publisher: str, index: int, complete_at: float) -> None:
        st = self.pairs.setdefault(publisher, PairStats())
        if st.first_at is None:
            st.first_at = time.monotonic()
        st.frames += 1
        tag = PUBLISHER_TAGS.get(publisher)
        sent = botmod._sent_at.get(tag) if tag is not None else None
        if sent is None or index >= len(sent) or sent[index][1] < 0:
            return
        sent_time, seq = sent[index]
        latency = complete_at - sent_time
        if 0 <= latency < 3.0:  # the clip loops every 4 s; older would be a stale entry
            st.latencies.append(latency)
        if st.last_seq is not None:
            step = seq - st.last_seq
            if step <= 0:
                st.out_of_order += 1
            else:
                st.gaps += step - 1
        st.last_seq = max(seq, st.last_seq or seq)


PUBLISHER_TAGS: dict[str, int] = {}


def color_of(i: int) -> tuple[int, int, int]:
    return (40 + (67 * i) % 180, 40 + (131 * i) % 180, 40 + (29 * i) % 180)


class BotProcess:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.url = spec["server"]
        self.rooms = spec["rooms"]
        self.bots: dict[str, ProbeBot] = {}
        self.frame_table: dict[bytes, tuple[str, int]] = {}
        self.participants: dict[str, dict] = {}
        self.lag = LoopLag()
        self._marked_at = 0.0
        self._sent_at_mark: dict[str, int] = {}
        self.http: aiohttp.ClientSession | None = None
        self.janus_url: str | None = spec.get("janus")
        self.janus: dict[str, tuple[JanusSession, int]] = {}  # bot -> (session, handle)
        self.janus_rooms: dict[str, int] = {}  # room name -> Janus room id
        self.janus_feeds: dict[str, int] = {}  # publisher -> its Janus feed id
        i = 0
        for room in self.rooms:
            for p in room:
                self.participants[p["name"]] = p
                publish = p["publish"]
                bot = ProbeBot(
                    p["name"],
                    slots=p["slots"],
                    color=color_of(i) if publish else None,
                    tone_hz=(300 + 20 * i) if publish and p["audio"] else None,
                    size=tuple(spec["size"]),
                    fps=spec["fps"],
                    bitrate=spec["bitrate"],
                    decode=False,
                    relay=True,  # bench/bot.py RelayPublisher: cheap publishers
                    verify=spec["verify"],
                    frame_table=self.frame_table,
                )
                self.bots[p["name"]] = bot
                if bot.video_track is not None:
                    PUBLISHER_TAGS[bot.name] = bot.tag
                    for index, data in enumerate(bot.video_track._video.frames):
                        self.frame_table[data] = (bot.name, index)
                i += 1

    async def join(self, session: aiohttp.ClientSession, p: dict) -> None:
        if self.janus_url:
            await self.join_janus(p)
            return
        bot = self.bots[p["name"]]
        bot.joined_at = time.monotonic()
        offer = await bot.create_offer()
        body = {"room": p["room"], "participant": p["name"], "publish": p["publish"]}
        body |= {"audio": p["audio"], "sdp": offer}
        async with session.post(self.url + "/offer", json=body) as r:
            reply = await r.json()
            if r.status != 200:
                raise RuntimeError(f"offer of {p['name']} refused: {reply}")
        await bot.accept_answer(reply["sdp"])
        receive_directly(bot.pc)
        await bot.wait_connected(within=60)

    # --- Janus VideoRoom signalling (spec "janus": REST API base URL) -------------------------

    async def connect_janus(self, session: aiohttp.ClientSession) -> None:
        """Before anyone joins: a Janus session and a VideoRoom handle per bot (as a browser
        that has loaded the page), and each room created by its first publisher's handle."""

        async def connect(name: str) -> None:
            janus = JanusSession(session, self.janus_url)
            await janus.create()
            self.janus[name] = (janus, await janus.attach())

        await asyncio.gather(*(connect(name) for name in self.bots))
        for index, room in enumerate(self.rooms):
            owner = next((p["name"] for p in room if p["publish"]), room[0]["name"])
            janus, handle = self.janus[owner]
            self.janus_rooms[room[0]["room"]] = room_id = 1000 + index
            body = {
                "request": "create",
                "room": room_id,
                "permanent": False,
                "publishers": max(1, sum(p["publish"] for p in room)),
                "bitrate": self.spec["bitrate"],
                "fir_freq": 0,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "notify_joining": False,
            }
            await janus.message(handle, body)

    async def join_janus(self, p: dict) -> None:
        bot = self.bots[p["name"]]
        janus, handle = self.janus[p["name"]]
        room_id = self.janus_rooms[p["room"]]
        if p["publish"]:
            bot.joined_at = time.monotonic()
            join = {"request": "join", "ptype": "publisher", "room": room_id, "display": bot.name}
            data, _ = await janus.message(handle, join)
            self.janus_feeds[bot.name] = data["id"]
            offer = await bot.create_publish_offer()
            jsep = {"type": "offer", "sdp": offer, "trickle": False}
            _, answer = await janus.message(handle, {"request": "publish"}, jsep=jsep)
            if not answer:
                raise RuntimeError(f"janus gave {bot.name} no answer")
            await bot.accept_answer(answer["sdp"])
            receive_directly(bot.pc)
        else:
            room = next(r for r in self.rooms if r[0]["room"] == p["room"])
            feeds = [{"feed": self.janus_feeds[q["name"]]} for q in room if q["publish"]]
            bot.joined_at = time.monotonic()
            join = {"request": "join", "ptype": "subscriber", "room": room_id, "streams": feeds}
            _, offer = await janus.message(handle, join)
            if not offer:
                raise RuntimeError(f"janus gave {bot.name} no offer")
            answer = await bot.answer_offer(offer["sdp"])
            receive_directly(bot.pc)
            jsep = {"type": "answer", "sdp": answer, "trickle": False}
            await janus.message(handle, {"request": "start"}, jsep=jsep)
        await bot.wait_connected(within=60)

    def expected_pairs(self) -> list[tuple[str, str]]:
        out = []
        for room in self.rooms:
            for pub in room:
                for sub in room:
                    if pub["publish"] and sub is not pub and sub["slots"]:
                        out.append((sub["name"], pub["name"]))
        return out

    async def start(self) -> dict:
        # kept open until close(): Janus sessions long-poll on it
        self.http = session = aiohttp.ClientSession()
        if self.janus_url:
            await self.connect_janus(session)
        for room in self.rooms:
            first = [p for p in room if p["publish"] and not p["slots"]]
            rest = [p for p in room if p not in first]
            await asyncio.gather(*(self.join(session, p) for p in first))
            await asyncio.gather(*(self.join(session, p) for p in rest))
            await asyncio.sleep(self.spec["stagger"])
        pairs = self.expected_pairs()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded poll: frames arrive in aiortc's tasks
            if all(self._has_first(*p) for p in pairs):
                break
            await asyncio.sleep(0.1)
        if not self.janus_url:  # Janus has no slot map: audio counting needs none here
            await self.refresh_slots(session)
        ttff = []
        for sub, pub in pairs:
            st = self.bots[sub].pairs.get(pub)
            if st is not None and st.first_at is not None:
                start = max(self.bots[sub].joined_at, self.bots[pub].joined_at)
                ttff.append(round(st.first_at - start, 4))
        return {
            "event": "ready",
            "ttff": ttff,
            "missing": len(pairs) - len(ttff),
            "clip_kbps": [self.clip_kbps(b) for b in self.bots.values() if b.video_track],
        }

    def clip_kbps(self, bot: ProbeBot) -> float:
        """The publisher's actual video bitrate: its clip's bytes at its frame rate."""
        frames = bot.video_track._video.frames
        return round(sum(map(len, frames)) * 8 * self.spec["fps"] / len(frames) / 1000, 1)

    def _has_first(self, sub: str, pub: str) -> bool:
        st = self.bots[sub].pairs.get(pub)
        return st is not None and st.first_at is not None

    async def refresh_slots(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url + "/slots") as r:
            maps = await r.json()
        for name, bot in self.bots.items():
            bot.set_slot_map(maps.get(name, []))

    def mark(self) -> dict:
        self.lag.summary(reset=True)
        for bot in self.bots.values():
            for st in bot.pairs.values():
                st.mark()
        self._sent_at_mark = {n: b.video_track._n for n, b in self.bots.items() if b.video_track}
        self._marked_at = time.monotonic()
        return {"event": "marked"}

    def report(self) -> dict:
        seconds = time.monotonic() - self._marked_at
        sent = {
            n: b.video_track._n - self._sent_at_mark[n]
            for n, b in self.bots.items()
            if b.video_track
        }
        pairs, latencies, audio = [], [], 0
        for sub, pub in self.expected_pairs():
            st = self.bots[sub].pairs.get(pub) or PairStats()
            pairs.append(
                {
                    "sub": sub,
                    "pub": pub,
                    "frames": st.frames,
                    "gaps": st.gaps,
                    "out_of_order": st.out_of_order,
                    "sent": sent.get(pub, 0),
                }
            )
            latencies.extend(round(x, 5) for x in st.latencies)
            audio += st.audio_frames
        fps = self.spec["fps"]
        return {
            "event": "report",
            "seconds": seconds,
            "pairs": pairs,
            "latencies": latencies,
            "pace": [n / (fps * seconds) for n in sent.values()],
            "audio_frames": audio,
            "unknown_frames": sum(b.unknown_frames for b in self.bots.values()),
            **self.lag.summary(reset=False),
        }

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.bots.values()), return_exceptions=True)
        await asyncio.gather(*(j.destroy() for j, _ in self.janus.values()), return_exceptions=True)
        if self.http is not None:
            await self.http.close()


def receive_directly(pc) -> None:
    """The bots take SRTP off the socket the way Parley's server does (media/passthrough.py):
    cheaper bots leave more of this 2-core machine to the server under test, whichever it is."""
    for dtls in {t.receiver.transport for t in pc.getTransceivers()}:
        passthrough.receive_directly(dtls)


def say(msg: dict) -> None:
    print(json.dumps(msg), flush=True)


async def run(spec: dict) -> None:
    host = spec.get("host", "192.0.2.2")
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [host]
    if spec.get("rcvbuf"):
        from bench.run_load import set_udp_receive_buffer

        set_udp_receive_buffer(spec["rcvbuf"])
    proc = BotProcess(spec)
    proc.lag.start()
    loop = asyncio.get_running_loop()
    try:
        say(await proc.start())
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            command = line.strip()
            if command == "mark":
                say(proc.mark())
            elif command == "report":
                say(proc.report())
            elif command in ("quit", ""):
                break
    except Exception as exc:  # tell the orchestrator instead of dying silently
        say({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
    finally:
        proc.lag.stop()
        await proc.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    passthrough.install_rtcp_coalescing()  # this process only runs bots
    uvloop.run(run(json.loads(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
