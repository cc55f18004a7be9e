"""One participant's WebRTC connection: two uplink publications and K pre-allocated slots.

The browser (or a bot) offers; the server answers. Transceivers are created *before* the offer is
applied so that codec preferences decide the answer (aiortc fixes codecs inside
setRemoteDescription), and the receivers are tapped before the connection starts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from media import passthrough
from media.errors import MediaError
from media.offer import OfferShape, with_opus_fmtp
from media.publication import Publication
from media.rtt import RttEstimator
from media.slot import SlotTrack

log = logging.getLogger(__name__)

KINDS = ("audio", "video")
# Trickled candidates per connection: a browser finds a handful (host, srflx, relay per network);
# each one makes the server send connectivity checks to that address, so it is bounded.
MAX_TRICKLED = 16
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.M)
_MDNS_HOST = re.compile(r"^[0-9a-f-]{36}\.local$", re.I)


def codec_preferences(kind: str, video_codec: str) -> list:
    """Capabilities that force one codec per kind (plus RTX for video)."""
    wanted = {"audio": ["audio/opus"], "video": [f"video/{video_codec.lower()}", "video/rtx"]}[kind]
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() in wanted]


def guard_late_start(transceiver, is_closed: Callable[[], bool]) -> None:
    """Work around an aiortc race: closing a connection while it is still connecting.

    aiortc starts senders and receivers from an untracked task once DTLS is up; if the
    connection was closed meanwhile, that task still starts them and their RTCP tasks run
    forever (seen: one leaked task per receiver in join/leave cycles). Refuse late starts.
    """
    receiver, sender = transceiver.receiver, transceiver.sender
    receive, send = receiver.receive, sender.send

    async def guarded_receive(parameters) -> None:
        if not is_closed():
            await receive(parameters)

    async def guarded_send(parameters) -> None:
        if not is_closed():
            await send(parameters)

    receiver.receive, sender.send = guarded_receive, guarded_send


def guard_transport_start(dtls, is_closed: Callable[[], bool]) -> None:
    """Same race for the transports: a start after close raises inside aiortc's connect task
    ("RTCIceTransport is closed", logged as a never-retrieved task exception)."""
    ice = dtls.transport
    dtls_start, ice_start = dtls.start, ice.start

    async def guarded_dtls_start(parameters) -> None:
        if not is_closed():
            await dtls_start(parameters)

    async def guarded_ice_start(parameters) -> None:
        if not is_closed():
            await ice_start(parameters)

    dtls.start, ice.start = guarded_dtls_start, guarded_ice_start


def parse_candidate(line: str):
    """An ``a=candidate`` value (with or without its ``candidate:`` prefix) as aiortc's
    RTCIceCandidate, or MediaError("bad_candidate"): one UDP or TCP candidate of component 1
    (RTP; bundled and rtcp-mux), a literal IP address or an mDNS name, a real port and type."""
    text = line.strip().removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise MediaError("bad_candidate", "not an ICE candidate line") from exc
    if candidate.component != 1 or candidate.protocol.lower() not in ("udp", "tcp"):
        raise MediaError("bad_candidate", "only component 1 over UDP or TCP")
    if candidate.type not in CANDIDATE_TYPES or not 0 < candidate.port < 65536:
        raise MediaError("bad_candidate", "unknown candidate type or port out of range")
    if not _MDNS_HOST.match(candidate.ip):
        try:
            ipaddress.ip_address(candidate.ip)
        except ValueError as exc:
            raise MediaError("bad_candidate", "the address is neither an IP nor mDNS") from exc
    return candidate


@dataclass
class Slot:
    """One pre-negotiated audio + video sender pair of a subscriber."""

    index: int
    mids: dict[str, str]
    tracks: dict[str, SlotTrack] = field(default_factory=dict)
    senders: dict[str, RTCRtpSender] = field(default_factory=dict)
    relays: dict[str, passthrough.RtpRelay] = field(default_factory=dict)


FeedbackCallback = Callable[["PeerSession", Slot, str, object], None]


class PeerSession:
    """Owned by the MediaEngine; owns its publications and slots; `close()` cascades."""

    def __init__(
        self,
        participant_id: str,
        shape: OfferShape,
        *,
        video_codec: str,
        connect_timeout: float,
        on_state: Callable[[PeerSession, str], None],
        on_feedback: FeedbackCallback | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.shape = shape
        self.state = "new"
        self.closed = False
        self.close_reason: str | None = None
        self._on_state = on_state
        self._on_feedback = on_feedback
        self._connect_timeout = connect_timeout
        self._timeout: asyncio.TimerHandle | None = None
        self.remote_ufrag: str | None = None  # the offer's ICE username fragment
        self.trickled = 0
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.on("connectionstatechange", self._connection_state_changed)
        self.publications: dict[str, Publication] = {}
        self.slots: list[Slot] = []
        # round trip to this participant, timed by its slots' sender reports: the hole wait of
        # its own video follows it (media/rtt.py)
        self.rtt = RttEstimator(self._rtt_changed)
        for kind in KINDS:
            t = self.pc.addTransceiver(kind, direction="recvonly")
            t.setCodecPreferences(codec_preferences(kind, video_codec))
            guard_late_start(t, lambda: self.closed)
            self.publications[kind] = Publication(participant_id, kind, t.receiver)
        for index, (audio_mid, video_mid) in enumerate(shape.slots):
            slot = Slot(index, {"audio": audio_mid, "video": video_mid})
            for kind in KINDS:
                track = SlotTrack(kind)
                t = self.pc.addTransceiver(track, direction="sendonly")
                t.setCodecPreferences(codec_preferences(kind, video_codec))
                guard_late_start(t, lambda: self.closed)
                passthrough.unused_receiver(t.receiver)
                slot.tracks[kind], slot.senders[kind] = track, t.sender
                track.output = slot.relays[kind] = passthrough.hook_sender(
                    t.sender,
                    self._keyframe_asker(track),
                    self._feedback_relay(slot, kind) if on_feedback else None,
                    active=False,  # idle until the plan attaches a source
                )
                slot.relays[kind].on_rtt = self.rtt.add
            self.slots.append(slot)

    async def answer(self, sdp: str) -> str:
        """Apply the (already checked) offer and return the answer once ICE has gathered."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except MediaError:
            raise
        except Exception as exc:
            raise MediaError("bad_sdp", f"the offer could not be applied: {exc}") from exc
        self._check_binding()
        found = _UFRAG.search(sdp)
        self.remote_ufrag = found.group(1).strip() if found else None
        for dtls in {t.receiver.transport for t in self.pc.getTransceivers()}:
            guard_transport_start(dtls, lambda: self.closed)
            passthrough.route_fir(dtls)
            passthrough.receive_directly(dtls)
        loop = asyncio.get_running_loop()
        self._timeout = loop.call_later(self._connect_timeout, self._connect_timed_out)
        return with_opus_fmtp(self.pc.localDescription.sdp)  # FEC + DTX (media/offer.py)

    async def add_candidate(self, line: str, mid: str, ufrag: str) -> None:
        """A candidate the browser found after its offer left (trickle ICE). The offer may carry
        none: the browser's checks reach the server's host candidate anyway (aioice learns their
        source as a peer-reflexive candidate); a trickled one lets the server check towards the
        browser too. Raises MediaError: ``closed``, ``stale_candidate`` (another connection's
        ufrag), ``bad_candidate``, ``too_many_candidates``."""
        if self.closed or self.remote_ufrag is None:
            raise MediaError("closed", "this connection is closed or not answered yet")
        if ufrag != self.remote_ufrag:
            raise MediaError("stale_candidate", "the candidate belongs to another connection")
        if mid not in {t.mid for t in self.pc.getTransceivers()}:
            raise MediaError("bad_candidate", "no m-line with that mid")
        candidate = parse_candidate(line)
        if self.trickled >= MAX_TRICKLED:
            raise MediaError("too_many_candidates", f"at most {MAX_TRICKLED} candidates")
        self.trickled += 1
        # with max-bundle every m-line shares the first one's transport: aiortc adds a candidate
        # only on a transceiver that is not bundled, so it goes to the first mid
        first_mid = self.pc.getTransceivers()[0].mid
        try:
            await self.pc.addIceCandidate(replace(candidate, sdpMid=first_mid))
        except ValueError as exc:  # aioice: the offer already said end-of-candidates
            raise MediaError("bad_candidate", "the offer ended its candidates") from exc

    def _check_binding(self) -> None:
        """Our transceivers must have been bound to the offer's m-lines in order."""
        expected = [self.shape.audio_mid, self.shape.video_mid]
        for a, v in self.shape.slots:
            expected += [a, v]
        actual = [t.mid for t in self.pc.getTransceivers()]
        if actual != expected:
            raise MediaError("bad_sdp", "the offer's m-lines do not match the expected layout")

    def _rtt_changed(self, rtt: RttEstimator) -> None:
        if not self.closed:
            self.publications["video"].set_rtt(rtt.timeout)

    def _keyframe_asker(self, track: SlotTrack) -> Callable[[], None]:
        def ask() -> None:
            source = track.source
            if source is not None:
                source.forwarder.request_keyframe()

        return ask

    def _feedback_relay(self, slot: Slot, kind: str) -> Callable[[object], None]:
        def relay(packet: object) -> None:
            if self._on_feedback is not None and not self.closed:
                self._on_feedback(self, slot, kind, packet)

        return relay

    def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        if self.closed or state == self.state:
            return
        self.state = state
        if state == "connected" and self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if state in ("connected", "failed", "closed"):
            # "closed" here was not our doing: the remote closed DTLS or ICE consent expired
            self._on_state(self, state)

    def _connect_timed_out(self) -> None:
        self._timeout = None
        if not self.closed and self.state != "connected":
            self.state = "failed"
            self._on_state(self, "failed")

    def slot_sender_stats(self) -> dict:
        """Totals over the slot senders: RTP packets and payload bytes sent, frames sent and
        dropped (held too long while not connected), packets retransmitted on NACK."""
        out = {"packets": 0, "bytes": 0, "frames": 0, "frames_dropped": 0, "retransmitted": 0}
        for slot in self.slots:
            for kind, relay in slot.relays.items():
                out["packets"] += relay.packets
                out["bytes"] += relay.octets
                out["frames"] += slot.tracks[kind].frames_sent
                out["frames_dropped"] += slot.tracks[kind].frames_dropped
                out["retransmitted"] += relay.retransmitted
        return out

    async def close(self, reason: str) -> None:
        """Close publications (and their subscriptions), slots, then the connection."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        for pub in self.publications.values():
            pub.close(reason)
        for slot in self.slots:
            for track in slot.tracks.values():
                source = track.source
                if source is not None:
                    source.close(reason)
                track.stop()
        await self.pc.close()

    def to_dict(self) -> dict:
        return {
            "participant": self.participant_id,
            "state": self.state,
            "slots": len(self.slots),
            "rtt_s": None if self.rtt.srtt is None else round(self.rtt.srtt, 3),
            "publications": [p.to_dict() for p in self.publications.values()],
        }
