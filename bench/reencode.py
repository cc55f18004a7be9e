"""The re-encoding baseline: what stock aiortc does (MediaRelay style), for the bench's ratio.

Every received track is decoded by aiortc's receiver thread; each subscriber slot gets its own
copy of the decoded pictures and its own sender encodes them again (one libvpx / libopus encode
per subscriber). `ReencodeEngine` answers the same offers as `media.engine.MediaEngine` and takes
the same plan edges, so bench/run_load.py drives both with one load and reports the ratio.

Nothing here is used by Parley itself; it exists so that every benchmark run says how much the
passthrough saves on the same machine at the same moment.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterable

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.engine import Edge
from media.offer import check_offer
from media.peer import KINDS, codec_preferences

# Decoded pictures waiting for one subscriber's encoder; older ones are dropped when the encoder
# cannot keep up (the relay's "unbuffered" behaviour: never grow memory, show it as frame loss).
SINK_DEPTH = 2


class DecodedSlotTrack(MediaStreamTrack):
    """A subscriber slot's outgoing track: yields decoded frames for the sender to encode."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.source: DecodedFanout | None = None
        self._frames: collections.deque = collections.deque(maxlen=SINK_DEPTH)
        self._wake = asyncio.Event()
        self.dropped = 0

    def offer(self, frame) -> None:
        if len(self._frames) == SINK_DEPTH:
            self.dropped += 1
        self._frames.append(frame)
        self._wake.set()

    async def recv(self):  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                return self._frames.popleft()
            self._wake.clear()
            await self._wake.wait()

    def stop(self) -> None:
        super().stop()
        self._wake.set()


class DecodedFanout:
    """Reads one publisher's decoded track and copies each frame to every subscribed slot."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.sinks: set[DecodedSlotTrack] = set()
        self.frames_in = 0
        self._task = asyncio.get_running_loop().create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()  # always drained: aiortc's queue is unbounded
                self.frames_in += 1
                for sink in self.sinks:
                    sink.offer(frame)

    def close(self) -> None:
        self._task.cancel()


class ReencodePeer:
    """One participant: recvonly uplinks decoded by aiortc, sendonly slots encoded by aiortc."""

    def __init__(self, participant_id: str, sdp: str, max_slots: int) -> None:
        self.participant_id = participant_id
        self.shape = check_offer(sdp, video_codec="VP8", max_slots=max_slots)
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.fanouts: dict[str, DecodedFanout] = {}
        self.receivers = {}
        for kind in KINDS:
            t = self.pc.addTransceiver(kind, direction="recvonly")
            t.setCodecPreferences(codec_preferences(kind, "VP8"))
            self.receivers[kind] = t.receiver
        self.slots: list[dict[str, DecodedSlotTrack]] = []
        self.senders = []
        for _ in self.shape.slots:
            slot = {}
            for kind in KINDS:
                track = DecodedSlotTrack(kind)
                t = self.pc.addTransceiver(track, direction="sendonly")
                t.setCodecPreferences(codec_preferences(kind, "VP8"))
                slot[kind] = track
                self.senders.append(t.sender)
            self.slots.append(slot)

    async def answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for kind, receiver in self.receivers.items():
            self.fanouts[kind] = DecodedFanout(receiver.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def packets_sent(self) -> int:
        return sum(getattr(s, "_RTCRtpSender__packet_count", 0) for s in self.senders)

    async def close(self) -> None:
        for fanout in self.fanouts.values():
            fanout.close()
        for slot in self.slots:
            for track in slot.values():
                track.stop()
        await self.pc.close()


class ReencodeEngine:
    """Same surface as MediaEngine for the bench: accept_offer, apply_plan, slot_map, stats."""

    def __init__(self, ice_host_addresses: list[str] | None = None, max_slots: int = 8) -> None:
        self.peers: dict[str, ReencodePeer] = {}
        self._edges: set[tuple[str, str, str]] = set()
        self._assign: dict[str, list[str | None]] = {}
        self._hosts = ice_host_addresses
        self._max_slots = max_slots

    async def start(self) -> None:
        if self._hosts is not None:
            hosts = list(self._hosts)
            aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(hosts)

    async def accept_offer(self, participant_id: str, sdp: str) -> str:
        peer = ReencodePeer(participant_id, sdp, self._max_slots)
        answer = await peer.answer(sdp)
        self.peers[participant_id] = peer
        self._reconcile()
        return answer

    def apply_plan(self, edges: Iterable[Edge]) -> None:
        self._edges = {(e.publisher, e.subscriber, e.kind) for e in edges}
        self._reconcile()

    def _reconcile(self) -> None:
        for sub_id, peer in self.peers.items():
            publishers = sorted({p for p, s, _ in self._edges if s == sub_id})
            assign = self._assign.setdefault(sub_id, [None] * len(peer.slots))
            for pub in publishers:
                if pub not in assign and None in assign:
                    assign[assign.index(None)] = pub
            for slot, pub in zip(peer.slots, assign, strict=True):
                for kind, track in slot.items():
                    publisher = self.peers.get(pub) if pub else None
                    fanout = publisher.fanouts.get(kind) if publisher else None
                    if track.source is not fanout:
                        if track.source is not None:
                            track.source.sinks.discard(track)
                        if fanout is not None:
                            fanout.sinks.add(track)
                        track.source = fanout

    def slot_map(self, participant_id: str) -> list[dict]:
        assign = self._assign.get(participant_id, [])
        return [{"slot": i, "participant": pub} for i, pub in enumerate(assign)]

    def stats(self) -> dict:
        peers = self.peers.values()
        return {
            "peers": len(self.peers),
            "packets_sent": sum(p.packets_sent() for p in peers),
            "frames_received": sum(f.frames_in for p in peers for f in p.fanouts.values()),
            "sink_drops": sum(t.dropped for p in peers for s in p.slots for t in s.values()),
        }

    async def close(self) -> None:
        peers = list(self.peers.values())
        self.peers.clear()
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
