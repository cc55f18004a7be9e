"""An aiortc client bot: publishes a recognisable pre-encoded picture and tone, checks what arrives.

Used by the media and signaling tests and by the benchmarks. It makes the offer shape Parley
expects (audio + video sendonly, then K recvonly audio/video slot pairs), publishes a clip from
bench/clip.py without encoding anything (answering PLIs with a pre-encoded keyframe), and for
every received picture reads the barcode to tell *whose* picture it is and which frame, so a
test can assert routing, frame rate, gaps and time to first frame — not just traffic.

    bot = Bot("p-alice", slots=2, color=(220, 40, 40), tone_hz=440)
    offer = await bot.create_offer()
    await bot.accept_answer(answer_sdp)
    bot.set_slot_map(slot_map)
    bot.received()  # {"p-bob": {"frames": 120, "fps": 14.9, "slots": [0], ...}, ...}
    await bot.close()
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from bench import clip as clips
from media import passthrough
from media.rtp import EncodedFrame
from media.slot import SlotTrack

FREEZE = 0.25  # seconds without a new picture that a viewer notices as a freeze
VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)

# tag (8 bits in the barcode) -> bot name, and (tag, frame index) -> last send time, for all
# bots of this process: a subscriber can name the publisher and measure end-to-end latency.
_names_by_tag: dict[int, str] = {}
_sent_at: dict[int, list[tuple[float, int]]] = {}  # tag -> per clip index (time, send seq)


def _assign_tag(name: str) -> int:
    """A free tag; when all 256 are taken (a long test run makes many bots, not all closed),
    the longest-held one is reused: only bots alive together need distinct tags."""
    tag = zlib.crc32(name.encode()) & 0xFF
    for candidate in itertools.chain([tag], range(256)):
        if _names_by_tag.get(candidate) in (None, name):
            _names_by_tag[candidate] = name
            return candidate
    oldest = next(iter(_names_by_tag))
    del _names_by_tag[oldest]
    _names_by_tag[oldest] = name
    return oldest


def _release_tag(tag: int, name: str) -> None:
    if _names_by_tag.get(tag) == name:
        del _names_by_tag[tag]


def vp8_codecs() -> list:
    """aiortc's VP8 (and RTX) codec capabilities: the bots offer and accept VP8 only."""
    return [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType.lower() in ("video/vp8", "video/rtx")
    ]


class ClipTrack(MediaStreamTrack):
    """Yields pre-encoded packets at real-time pace; a PLI makes the next one a keyframe."""

    def __init__(
        self,
        kind: str,
        *,
        video: clips.VideoClip | None = None,
        audio: clips.AudioClip | None = None,
        tag: int = 0,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._video, self._audio, self._tag = video, audio, tag
        self._keyframe_wanted = False
        self._n = 0
        self._pos = 0
        self._start: float | None = None
        self.keyframes_sent = 0
        self.keyframe_requests = 0
        if video is not None:
            _sent_at[tag] = [(0.0, -1)] * len(video.frames)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    async def next_frame(self) -> tuple[int, int]:
        """Wait for the next frame's turn; (clip index, RTP timestamp). Keeps the send log."""
        if self.readyState != "live":
            raise MediaStreamError
        period = 1 / self._video.fps if self._video else 0.02
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._n * period
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:  # fell far behind (loaded machine): skip ahead instead of bursting
            self._start = time.monotonic() - self._n * period
        n = self._n
        self._n += 1
        if self._video is None:
            return n % len(self._audio.packets), n * 960
        frames = self._video.frames
        if self._keyframe_wanted:
            # answer a PLI: jump to the next keyframe of the clip
            self._keyframe_wanted = False
            self._pos = next(
                (k for k in self._video.keyframe_indices if k >= self._pos % len(frames)), 0
            )
        i = self._pos % len(frames)
        self._pos = i + 1
        if self.is_keyframe(i):
            self.keyframes_sent += 1
        _sent_at[self._tag][i] = (time.time(), n)
        return i, n * 90000 // self._video.fps

    def is_keyframe(self, index: int) -> bool:
        """Whether clip frame `index` is a keyframe (every audio packet counts as one)."""
        return self._video is None or index in self._video.keyframe_indices

    async def recv(self) -> av.Packet:  # type: ignore[override]
        index, pts = await self.next_frame()
        if self._video is not None:
            packet = av.Packet(self._video.frames[index])
            packet.time_base = VIDEO_TB
        else:
            packet = av.Packet(self._audio.packets[index])
            packet.time_base = AUDIO_TB
        packet.pts = pts
        return packet

    def rtp_payloads(self) -> list[list[RtpPacket]]:
        """The clip as RTP packets, per clip index: VP8 split at 1200 bytes behind a minimal
        payload descriptor (S=1 on the first, no picture ID; RFC 7741), Opus one per packet."""
        if self._video is None:
            return [[_rtp(data, True)] for data in self._audio.packets]
        out = []
        for frame in self._video.frames:
            chunks = [frame[i : i + RTP_CHUNK] for i in range(0, len(frame), RTP_CHUNK)]
            out.append(
                [
                    _rtp((b"\x10" if i == 0 else b"\x00") + chunk, i == len(chunks) - 1)
                    for i, chunk in enumerate(chunks)
                ]
            )
        return out


RTP_CHUNK = 1200


def _rtp(payload: bytes, marker: bool) -> RtpPacket:
    packet = RtpPacket(marker=int(marker))
    packet.payload = payload
    return packet


class RelayPublisher:
    """Publishes a ClipTrack through Parley's `RtpRelay` instead of aiortc's packetizer and
    sender task: the clip is packetized once, and each frame costs a header, SRTP and `sendto`
    per packet. The load bench uses it so that 60 publishers fit beside the server under test on
    two cores; the media tests keep aiortc's own publishing path. aiortc's sender gets an idle
    track (its task waits there) and keeps sending sender reports from the relay's counters."""

    def __init__(self, pc: RTCPeerConnection, track: ClipTrack) -> None:
        self.track = track
        self.transceiver = pc.addTransceiver(SlotTrack(track.kind), direction="sendonly")
        self.relay = passthrough.hook_sender(self.transceiver.sender, track.request_keyframe)
        self._frames = track.rtp_payloads()
        self.sent = 0

    async def run(self) -> None:
        """Once connected (as aiortc's sender starts only then), pace and send until the track
        stops: the clip starts on its first frame, a keyframe."""
        try:
            while not self.relay.can_send:
                if self.track.readyState != "live":
                    return
                await asyncio.sleep(0.01)
            while True:
                index, pts = await self.track.next_frame()
                frame = EncodedFrame(self._frames[index], pts, self.track.is_keyframe(index))
                if self.relay.send(frame, pts):
                    self.sent += 1
        except MediaStreamError:
            return


@dataclass
class PublisherStats:
    """What one subscriber bot received of one publisher's picture."""

    frames: int = 0
    first_frame_at: float | None = None  # seconds after the answer was applied
    first_frame_clock: float | None = None  # time.monotonic() of the first frame
    last_index: int | None = None  # publisher's send sequence number of the last frame
    gaps: int = 0  # frames missing between consecutive received ones
    out_of_order: int = 0
    slots: set[int] = field(default_factory=set)
    color: tuple[int, int, int] | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=2000))
    times: deque = field(default_factory=lambda: deque(maxlen=64))
    audio_frames: int = 0
    last_at: float | None = None
    last_sent_at: float = 0.0  # time.time() at which the publisher sent the latest frame seen
    freezes: list = field(default_factory=list)  # pauses between frames longer than FREEZE

    def fps(self, window: float = 2.0) -> float:
        now = time.monotonic()
        recent = [t for t in self.times if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])


class Bot:
    """One participant made of an aiortc peer connection."""

    def __init__(
        self,
        name: str,
        slots: int = 2,
        color: tuple[int, int, int] | None = None,
        tone_hz: float | None = None,
        *,
        size: tuple[int, int] = (320, 240),
        fps: int = 15,
        bitrate: int = 500_000,
        decode: bool = True,
        relay: bool = False,
        ice_servers: list | None = None,
    ) -> None:
        self.name = name
        self.relay = relay
        self.publishers: list[RelayPublisher] = []
        self.slot_count = slots
        self.tag = _assign_tag(name)
        self.decode = decode
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
        )
        self.video_track: ClipTrack | None = None
        self.audio_track: ClipTrack | None = None
        if color is not None:
            video = clips.video_clip(
                color=color,
                tag=self.tag,
                width=size[0],
                height=size[1],
                fps=fps,
                frames=4 * fps,
                bitrate=bitrate,
            )
            self.video_track = ClipTrack("video", video=video, tag=self.tag)
        if tone_hz is not None:
            self.audio_track = ClipTrack("audio", audio=clips.audio_clip(tone_hz=tone_hz))
        self.stats: dict[str, PublisherStats] = {}
        self.unreadable_frames = 0
        self.slot_participants: dict[int, str | None] = {}
        self._slot_of_mid: dict[str, tuple[int, str]] = {}
        self._tasks: list[asyncio.Task] = []
        self._answered_at: float | None = None
        self.closed = False

    def add_publishing_transceiver(self, kind: str):
        """The sendonly transceiver of `kind`: the clip through the relay (`relay=True`), the
        clip through aiortc's own sender, or nothing to send."""
        track = self.video_track if kind == "video" else self.audio_track
        if self.relay and track is not None:
            publisher = RelayPublisher(self.pc, track)
            self.publishers.append(publisher)
            t = publisher.transceiver
        else:
            t = self.pc.addTransceiver(track or kind, direction="sendonly")
            if track is not None and kind == "video":
                t.sender._send_keyframe = track.request_keyframe
        if kind == "video":
            t.setCodecPreferences(vp8_codecs())
        return t

    def start_publishing(self) -> None:
        """Start the relay publishers' pacing tasks (no-op for aiortc's own senders)."""
        for publisher in self.publishers:
            self._tasks.append(asyncio.create_task(publisher.run()))

    async def create_offer(self) -> str:
        self.add_publishing_transceiver("audio")
        self.add_publishing_transceiver("video")
        vp8 = vp8_codecs()
        for _ in range(self.slot_count):
            self.pc.addTransceiver("audio", direction="recvonly")
            t = self.pc.addTransceiver("video", direction="recvonly")
            t.setCodecPreferences(vp8)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        transceivers = self.pc.getTransceivers()
        for i in range(self.slot_count):
            a, v = transceivers[2 + 2 * i], transceivers[3 + 2 * i]
            self._slot_of_mid[a.mid] = (i, "audio")
            self._slot_of_mid[v.mid] = (i, "video")
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._answered_at = time.monotonic()
        self.start_publishing()
        for t in self.pc.getTransceivers()[2:]:
            slot, kind = self._slot_of_mid[t.mid]
            track = t.receiver.track
            reader = self._read_video if kind == "video" else self._read_audio
            self._tasks.append(asyncio.create_task(reader(slot, track)))

    def set_slot_map(self, slot_map: list[dict]) -> None:
        """The server's `slots` message: which participant each slot carries now."""
        self.slot_participants = {s["slot"]: s.get("participant") for s in slot_map}

    async def wait_connected(self, within: float = 10.0) -> None:
        for _ in range(int(within / 0.02)):
            state = self.pc.connectionState
            if state == "connected":
                return
            if state in ("failed", "closed"):
                raise ConnectionError(f"{self.name}: connection {state}")
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self.name}: not connected after {within} s")

    def _stats_for(self, name: str) -> PublisherStats:
        if name not in self.stats:
            self.stats[name] = PublisherStats()
        return self.stats[name]

    async def _read_video(self, slot: int, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                read = clips.read_barcode(frame) if self.decode else None
                if read is None:
                    self.unreadable_frames += 1
                    continue
                value, color = read
                tag, index = clips.split_barcode(value)
                name = _names_by_tag.get(tag)
                if name is None:
                    self.unreadable_frames += 1
                    continue
                self._count_frame(self._stats_for(name), slot, index, color, tag, now)
        except (MediaStreamError, asyncio.CancelledError):
            return

    def _count_frame(
        self, st: PublisherStats, slot: int, index: int, color, tag: int, now: float
    ) -> None:
        if st.first_frame_clock is None:
            st.first_frame_clock = now
            if self._answered_at is not None:
                st.first_frame_at = now - self._answered_at
        if st.last_at is not None and now - st.last_at > FREEZE:
            st.freezes.append(now - st.last_at)
        st.last_at = now
        st.frames += 1
        st.slots.add(slot)
        st.color = color
        st.times.append(now)
        sent = _sent_at.get(tag)
        seq = -1
        if sent is not None and index < len(sent) and sent[index][1] >= 0:
            sent_time, seq = sent[index]
            st.latencies.append(time.time() - sent_time)
            st.last_sent_at = sent_time
        if st.last_index is not None and seq >= 0:
            step = seq - st.last_index
            if step <= 0:
                st.out_of_order += 1
            else:
                st.gaps += step - 1
        st.last_index = seq if seq >= 0 else st.last_index

    async def _read_audio(self, slot: int, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                name = self.slot_participants.get(slot)
                if name is not None:
                    self._stats_for(name).audio_frames += 1
        except (MediaStreamError, asyncio.CancelledError):
            return

    def received(self) -> dict[str, dict]:
        """Per publisher (named by the barcode of its pictures): what arrived, where, how fast."""
        out = {}
        for name, st in self.stats.items():
            lat = sorted(st.latencies)
            out[name] = {
                "frames": st.frames,
                "fps": round(st.fps(), 2),
                "first_frame_s": st.first_frame_at,
                "gaps": st.gaps,
                "out_of_order": st.out_of_order,
                "slots": sorted(st.slots),
                "color": st.color,
                "audio_frames": st.audio_frames,
                "latency_p50": lat[len(lat) // 2] if lat else None,
                "latency_p95": lat[int(len(lat) * 0.95)] if lat else None,
                "freezes": [round(f, 3) for f in st.freezes],
            }
        return out

    def frames_from(self, name: str) -> int:
        st = self.stats.get(name)
        return st.frames if st else 0

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _release_tag(self.tag, self.name)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
