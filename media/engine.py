"""MediaEngine: the media layer's single entry point for signaling.

It owns one PeerSession per participant and reconciles what is forwarded with the media plan
(edges publisher → subscriber per kind) that rooms/ computes. Slots are assigned per subscriber:
one publisher occupies one slot (audio and video), a freed slot is reused, and assignments only
change with the plan — a publisher that reconnects finds its slot waiting. Knows nothing about
roles or spaces.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from media.errors import MediaError
from media.sink import FrameSink, SinkPort

if TYPE_CHECKING:
    from media.bandwidth import BandwidthMonitor
    from media.peer import PeerSession, Slot

__all__ = ["Edge", "FrameSink", "MediaConfig", "MediaEngine", "MediaError"]

log = logging.getLogger(__name__)

SUPPORTED_VIDEO_CODECS = ("VP8",)
KINDS = ("audio", "video")  # media.peer.KINDS, checked when the stack loads
# BandwidthMonitor.counters before the stack is loaded (tests/integration/startup checks the keys)
_IDLE_BANDWIDTH = {"remb_reports": 0, "loss_reports": 0, "hints_sent": 0}

# The aiortc stack (aiortc, PyAV, pylibsrtp, cryptography's DTLS path) is ~40 MB of an idle
# node's RSS, so it is imported when the first peer needs it, not at start (issue #15,
# docs/media.md "Loading aiortc"). These modules import it; nothing else here does.
_STACK_MODULES = ("media.passthrough", "media.bandwidth", "media.offer", "media.peer")


def _import_stack() -> None:
    """Import the aiortc-dependent modules (safe in a worker thread: the import lock)."""
    for name in _STACK_MODULES:
        importlib.import_module(name)


# The hook check of a start that has not loaded aiortc runs in a child interpreter: the server
# still refuses to start when aiortc's internals moved, without carrying aiortc while idle.
_CHECK = (
    "import sys; sys.path[:0] = sys.argv[1:]; "
    "from media.passthrough import check_aiortc; check_aiortc()"
)
CHECK_TIMEOUT = 60.0


class AiortcCheckFailed(RuntimeError):
    """The child interpreter's aiortc hook check failed (media.passthrough.check_aiortc)."""


async def _check_aiortc_in_child() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHECK,
        *sys.path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise AiortcCheckFailed(lines[-1] if lines else f"exit status {proc.returncode}")


def _stack() -> dict[str, ModuleType]:
    """The aiortc-dependent modules, imported once (a no-op after the first call)."""
    _import_stack()
    modules = {name.rsplit(".", 1)[1]: importlib.import_module(name) for name in _STACK_MODULES}
    if modules["peer"].KINDS != KINDS:
        raise RuntimeError(f"media.peer.KINDS is {modules['peer'].KINDS!r}, not {KINDS!r}")
    return modules


@dataclass
class MediaConfig:
    ice_host_addresses: list[str] | None = None  # None: aioice default (all non-loopback addrs)
    video_codec: str = "VP8"  # one codec per session/process; Opus for audio
    max_slots: int = 7  # most recvonly slot pairs a peer may offer
    connect_timeout: float = 20.0  # ICE + DTLS must complete within this, else "failed"
    # A vanished peer is noticed when ICE consent checks fail this many times in a row, one
    # check per interval (aioice's defaults: 6 x 5 s). Process-wide settings of aioice.
    consent_interval: float = 5.0
    consent_failures: int = 6


class Edge(Protocol):
    publisher: str
    subscriber: str
    kind: str


EdgeKey = tuple[str, str, str]  # (publisher, subscriber, kind)


class MediaEngine:
    """Peer factory, plan reconciler and load counters for one process."""

    def __init__(
        self,
        config: MediaConfig,
        *,
        on_slots: Callable[[str, list[dict]], None] | None = None,
        on_hint: Callable[[str, dict], None] | None = None,
        on_peer_state: Callable[[str, str], None] | None = None,
    ) -> None:
        if config.video_codec.upper() not in SUPPORTED_VIDEO_CODECS:
            raise ValueError(f"unsupported video codec {config.video_codec!r}")
        self.config = config
        self._on_slots = on_slots
        self._on_peer_state = on_peer_state
        self.peers: dict[str, PeerSession] = {}
        self._edges: set[EdgeKey] = set()
        self._thumbnails: dict[EdgeKey, float] = {}  # video edges forwarded as keyframes only
        self._assign: dict[str, list[str | None]] = {}  # subscriber -> publisher per slot
        self._paused: set[str] = set()
        self._last_maps: dict[str, list[dict]] = {}
        self._closing: set[asyncio.Task] = set()
        self._sinks: dict[str, FrameSink] = {}  # subscriber name -> in-process sink
        self._ports: dict[EdgeKey, SinkPort] = {}
        self._undo: list[Callable[[], None]] = []  # process-wide aiortc/aioice settings to undo
        self._on_hint = on_hint
        self._mods: dict[str, ModuleType] | None = None  # the aiortc stack, once loaded
        self._loading: asyncio.Future | None = None  # its import in a worker thread
        self._bandwidth: BandwidthMonitor | None = None
        self.started = False
        self.closed = False
        self.counters = {
            "peers_created": 0,
            "peers_failed": 0,
            "peers_lost": 0,
            "offers_rejected": 0,
            "edges_without_slot": 0,
        }

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the aiortc hook points (refuse to start if they moved). The aiortc stack is
        not imported here unless this process already carries aiortc: the check runs in a child
        interpreter, and the first peer loads the stack and sets up ICE (`_load_stack`)."""
        if "aiortc" in sys.modules:  # loaded anyway (a test with its bots): set it up here
            self._load_stack()
            self._patch_aiortc()
        else:
            await _check_aiortc_in_child()
        self.started = True

    # -- the aiortc stack, loaded on first use ---------------------------------------------------
    @property
    def stack_loaded(self) -> bool:
        return self._mods is not None

    def prefetch(self) -> None:
        """Start importing the aiortc stack in a worker thread, so that it is usually there
        before the first offer (which would otherwise wait a few tenths of a second). Idempotent."""
        if self._mods is not None or self._loading is not None or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plan applied in a plain test): the offer loads it
            return
        self._loading = loop.create_task(asyncio.to_thread(_import_stack))
        # retrieved here so a failed prefetch is not "never retrieved"; _ensure_stack re-raises
        self._loading.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _ensure_stack(self) -> dict[str, ModuleType]:
        """The aiortc stack, imported off the event loop if it is not there yet."""
        if self._mods is None:
            self.prefetch()
            loading = self._loading
            try:
                if loading is not None:
                    await asyncio.shield(loading)
            except asyncio.CancelledError:
                raise
            except BaseException:
                if self._loading is loading:
                    self._loading = None  # the next offer tries again
                raise
        return self._load_stack()

    def _load_stack(self) -> dict[str, ModuleType]:
        """Import (if still needed, on this thread) and set up the aiortc stack once."""
        if self._mods is None:
            mods = _stack()
            self._bandwidth = mods["bandwidth"].BandwidthMonitor(self._on_hint)
            self._mods = mods
            log.info("aiortc stack loaded")
            if self.started and not self.closed:
                self._patch_aiortc()
        return self._mods

    def _patch_aiortc(self) -> None:
        """Check the aiortc hook points (raise if they moved), install the patches and set up
        ICE (aioice's process-wide settings), once, before the first peer."""
        if self._undo:
            return
        import aioice.ice as ice  # loaded with aiortc

        passthrough = self._mods["passthrough"]
        passthrough.check_aiortc()
        self._undo = [passthrough.install_fast_clock(), passthrough.install_rtcp_coalescing()]
        consent = (ice.CONSENT_INTERVAL, ice.CONSENT_FAILURES)
        ice.CONSENT_INTERVAL = self.config.consent_interval
        ice.CONSENT_FAILURES = self.config.consent_failures
        self._undo.append(lambda: setattr(ice, "CONSENT_INTERVAL", consent[0]))
        self._undo.append(lambda: setattr(ice, "CONSENT_FAILURES", consent[1]))
        if self.config.ice_host_addresses is not None:
            addresses = list(self.config.ice_host_addresses)
            original = ice.get_host_addresses
            ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
            self._undo.append(lambda: setattr(ice, "get_host_addresses", original))

    @property
    def bandwidth(self) -> BandwidthMonitor:
        if self._bandwidth is None:
            self._load_stack()
        return self._bandwidth

    async def close(self) -> None:
        """Close every peer; idempotent."""
        if self.closed:
            return
        self.closed = True
        for key in list(self._sinks):
            self.detach_sink(key)
        peers = list(self.peers.values())
        self.peers.clear()
        await asyncio.gather(*(p.close("engine closed") for p in peers), return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        while self._undo:
            self._undo.pop()()

    # -- peers ---------------------------------------------------------------------------------
    async def accept_offer(
        self, participant_id: str, sdp: str, *, max_slots: int | None = None
    ) -> str:
        """Create the participant's PeerSession (replacing an older one) and return the answer.
        ``max_slots`` overrides the configured limit for this peer (an officer's grid)."""
        if not self.started or self.closed:
            raise MediaError("closed", "the media engine is not running")
        if not isinstance(participant_id, str) or not participant_id:
            raise MediaError("bad_request", "participant id must be a non-empty string")
        mods = await self._ensure_stack()
        if self.closed:
            raise MediaError("closed", "the media engine is not running")
        try:
            shape = mods["offer"].check_offer(
                sdp,
                video_codec=self.config.video_codec,
                max_slots=self.config.max_slots if max_slots is None else max_slots,
            )
        except MediaError:
            self.counters["offers_rejected"] += 1
            raise
        old = self.peers.pop(participant_id, None)
        if old is not None:
            await old.close("replaced")
            self._reconcile()
        peer = mods["peer"].PeerSession(
            participant_id,
            shape,
            video_codec=self.config.video_codec,
            connect_timeout=self.config.connect_timeout,
            on_state=self._peer_state_changed,
            on_feedback=self.bandwidth.feedback,
        )
        try:
            answer = await peer.answer(sdp)
        except BaseException:
            self.counters["offers_rejected"] += 1
            await peer.close("bad offer")
            raise
        if self.closed or participant_id in self.peers:
            # the engine closed, or another offer of the same participant won while we gathered
            await peer.close("superseded")
            raise MediaError("closed", "this connection was superseded")
        self.peers[participant_id] = peer
        self.counters["peers_created"] += 1
        self._reconcile()
        return answer

    async def close_peer(self, participant_id: str, reason: str) -> None:
        peer = self.peers.pop(participant_id, None)
        if peer is None:
            return
        await peer.close(reason)
        self.bandwidth.forget(participant_id)
        self._paused.discard(participant_id)
        self._reconcile()
        self._report(participant_id, "closed")

    def _peer_state_changed(self, peer: PeerSession, state: str) -> None:
        if self.peers.get(peer.participant_id) is not peer:
            return
        if state in ("failed", "closed"):
            self.counters["peers_failed" if state == "failed" else "peers_lost"] += 1
            del self.peers[peer.participant_id]
            task = asyncio.get_running_loop().create_task(peer.close(f"connection {state}"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self.bandwidth.forget(peer.participant_id)
            self._reconcile()
        self._report(peer.participant_id, state)

    def _report(self, participant_id: str, state: str) -> None:
        if self._on_peer_state is not None:
            self._on_peer_state(participant_id, state)

    # -- the plan ------------------------------------------------------------------------------
    def apply_plan(self, edges: Iterable[Edge]) -> None:
        """Forward exactly these edges (remembered for peers that are not connected yet)."""
        wanted: set[EdgeKey] = set()
        thumbnails: dict[EdgeKey, float] = {}  # an edge's optional `keyframe_interval` (s)
        for e in edges:
            if e.kind not in KINDS:
                raise ValueError(f"edge kind must be audio or video, not {e.kind!r}")
            if e.publisher != e.subscriber:
                key = (e.publisher, e.subscriber, e.kind)
                interval = getattr(e, "keyframe_interval", 0.0) if e.kind == "video" else 0.0
                if interval and (key not in wanted or key in thumbnails):
                    thumbnails[key] = min(interval, thumbnails.get(key, interval))
                elif not interval:
                    thumbnails.pop(key, None)  # a full-rate edge wins over a thumbnail
                wanted.add(key)
        self._edges = wanted
        self._thumbnails = thumbnails
        if wanted:  # someone will offer soon: load aiortc before the offer comes (docs/media.md)
            self.prefetch()
        self._reconcile()

    # -- local sinks (docs/recording.md: "The sink API") -----------------------------------------
    def attach_sink(self, subscriber_id: str, sink: FrameSink) -> None:
        """Edges whose subscriber is `subscriber_id` deliver to `sink` instead of a peer."""
        if subscriber_id in self.peers or subscriber_id in self._sinks:
            raise ValueError(f"{subscriber_id!r} is already a subscriber")
        self._sinks[subscriber_id] = sink
        self._reconcile()

    def detach_sink(self, subscriber_id: str) -> None:
        if self._sinks.pop(subscriber_id, None) is not None:
            self._reconcile()

    def request_keyframe(self, publisher_id: str) -> None:
        """Ask a publisher for a video keyframe (rate-limited with everyone else's asks)."""
        peer = self.peers.get(publisher_id)
        publication = peer.publications.get("video") if peer is not None else None
        if publication is not None:
            publication.forwarder.request_keyframe()

    def _reconcile_sinks(self) -> None:
        for key, port in list(self._ports.items()):
            pub, sub, kind = key
            peer = self.peers.get(pub)
            current = peer.publications.get(kind) if peer is not None else None
            source = port.source
            if (
                key not in self._edges
                or sub not in self._sinks
                or source is None
                or source.closed
                or current is None
                or source.forwarder is not current.forwarder
            ):
                del self._ports[key]
                port.close()
        for key in self._edges:
            pub, sub, kind = key
            if sub not in self._sinks or key in self._ports or pub not in self.peers:
                continue
            publication = self.peers[pub].publications.get(kind)
            if publication is None or publication.closed:
                continue
            port = SinkPort(self._sinks[sub], pub, kind)
            self._ports[key] = port
            publication.forwarder.subscribe(sub, port)

    def set_video_paused(self, subscriber_id: str, paused: bool) -> None:
        """Audio-only mode for one subscriber; resuming waits for a keyframe."""
        if paused:
            self._paused.add(subscriber_id)
        else:
            self._paused.discard(subscriber_id)
        self._reconcile()

    def _reconcile(self) -> None:
        """Make every subscriber's slots carry exactly what the plan says, then report maps."""
        for sub_id, peer in self.peers.items():
            self._reconcile_subscriber(sub_id, peer)
        self._reconcile_sinks()
        for sub_id in list(self._assign):
            if sub_id not in self.peers and not any(s == sub_id for _, s, _ in self._edges):
                del self._assign[sub_id]
        self._publish_maps()

    def _reconcile_subscriber(self, sub_id: str, peer: PeerSession) -> None:
        publishers = sorted({p for p, s, _ in self._edges if s == sub_id})
        assign = self._assign.setdefault(sub_id, [])
        del assign[len(peer.slots) :]
        assign.extend([None] * (len(peer.slots) - len(assign)))
        for i, pub in enumerate(assign):
            if pub is not None and pub not in publishers:
                assign[i] = None
        for pub in publishers:
            if pub not in assign:
                if None in assign:
                    assign[assign.index(None)] = pub
                else:  # more publishers than the subscriber offered slots for
                    self.counters["edges_without_slot"] += 1
        for slot, pub in zip(peer.slots, assign, strict=True):
            for kind in KINDS:
                self._reconcile_track(sub_id, slot, pub, kind)

    def _reconcile_track(self, sub_id: str, slot: Slot, pub: str | None, kind: str) -> None:
        track = slot.tracks[kind]
        current = track.source
        publisher = self.peers.get(pub) if pub is not None else None
        wanted = publisher is not None and (pub, sub_id, kind) in self._edges
        forwarder = publisher.publications[kind].forwarder if wanted else None
        interval = self._thumbnails.get((pub, sub_id, kind), 0.0)
        if current is not None and (
            current.closed
            or current.forwarder is not forwarder
            or current.keyframe_interval != interval
        ):
            current.close("plan changed")
            current = None
        if forwarder is not None and current is None:
            current = forwarder.subscribe(sub_id, track, interval)
        if current is not None and kind == "video":
            current.set_paused(sub_id in self._paused)

    def slot_map(self, participant_id: str) -> list[dict]:
        peer = self.peers.get(participant_id)
        if peer is None:
            return []
        assign = self._assign.get(participant_id, [])
        result = []
        for slot in peer.slots:
            pub = assign[slot.index] if slot.index < len(assign) else None
            flags = {}
            for kind in KINDS:
                src = slot.tracks[kind].source
                flags[kind] = src is not None and not src.paused
            result.append(
                {
                    "slot": slot.index,
                    "audio_mid": slot.mids["audio"],
                    "video_mid": slot.mids["video"],
                    "participant": pub,
                    "audio": flags["audio"],
                    "video": flags["video"],
                }
            )
        return result

    def _publish_maps(self) -> None:
        for pid in list(self.peers):
            current = self.slot_map(pid)
            if current != self._last_maps.get(pid):
                self._last_maps[pid] = current
                if self._on_slots is not None:
                    self._on_slots(pid, current)
        for pid in list(self._last_maps):
            if pid not in self.peers:
                del self._last_maps[pid]

    # -- numbers -------------------------------------------------------------------------------
    def quality(self, participant_id: str) -> dict | None:
        """A participant's link as the server sees it, for the host's console: the connection
        state and the smoothed downlink loss its receiver reports (None until reported)."""
        peer = self.peers.get(participant_id)
        if peer is None:
            return None
        loss = self.bandwidth.loss_of(participant_id)
        return {
            "state": peer.state,
            "loss": None if loss is None else round(loss, 3),
            "video_paused": participant_id in self._paused,
            "rtt": None if peer.rtt.srtt is None else round(peer.rtt.srtt, 3),
            **{kind: pub.link() for kind, pub in peer.publications.items()},
        }

    def to_dict(self) -> dict:
        """The engine's state for the admin console and logs."""
        return {
            "config": {
                "video_codec": self.config.video_codec,
                "max_slots": self.config.max_slots,
                "connect_timeout": self.config.connect_timeout,
            },
            "peers": [peer.to_dict() for peer in self.peers.values()],
            "slots": {pid: self.slot_map(pid) for pid in self.peers},
            "paused_video": sorted(self._paused),
        }

    def _hole_stats(self) -> dict:
        """The video jitter buffers: holes given up on (a keyframe asked for), skipped to a
        complete keyframe, NACKs repeated, loss bursts; the longest hole wait and the longest
        smoothed round trip to a participant now."""
        buffers = [
            p.publications["video"].jitter_buffer
            for p in self.peers.values()
            if p.publications["video"].jitter_buffer is not None
        ]
        return {
            "video_holes_skipped": sum(b.holes_skipped for b in buffers),
            "video_holes_skipped_to_keyframe": sum(b.holes_skipped_to_keyframe for b in buffers),
            "video_nacks_repeated": sum(b.nacks_repeated for b in buffers),
            "video_loss_bursts": sum(b.bursts for b in buffers),
            "video_hole_wait_max_s": max((b.max_wait for b in buffers), default=0.0),
            "peer_rtt_max_s": max((p.rtt.srtt or 0.0 for p in self.peers.values()), default=0.0),
        }

    def stats(self) -> dict:
        """Counters for /metrics and the bench (all plain numbers)."""
        pubs = [p for peer in self.peers.values() for p in peer.publications.values()]
        subs = [s for p in pubs for s in p.forwarder.subscriptions.values()]
        sent = {"packets": 0, "bytes": 0, "frames": 0, "frames_dropped": 0, "retransmitted": 0}
        for peer in self.peers.values():
            for key, value in peer.slot_sender_stats().items():
                sent[key] += value
        return {
            "peers": len(self.peers),
            "peers_connected": sum(p.state == "connected" for p in self.peers.values()),
            "publications_active": sum(p.active for p in pubs),
            "subscriptions": len(subs),
            "subscriptions_paused": sum(s.paused for s in subs),
            "frames_received": sum(p.forwarder.frames_in for p in pubs),
            "keyframes_received": sum(p.forwarder.keyframes_in for p in pubs),
            "frames_forwarded": sum(s.frames_forwarded for s in subs),
            "frames_gated": sum(s.frames_gated for s in subs),
            "frames_to_sinks": sum(p.frames for p in self._ports.values()),
            "frames_unsent": sum(s.frames_unsent for s in subs),
            "keyframe_requests_sent": sum(p.forwarder.keyframe_requests for p in pubs),
            "keyframe_requests_asked": sum(p.forwarder.keyframe_asks for p in pubs),
            "upstream_losses": sum(p.upstream_losses for p in pubs),
            "packets_sent": sent["packets"],
            "bytes_sent": sent["bytes"],
            "frames_sent": sent["frames"],
            "frames_dropped_unconnected": sent["frames_dropped"],
            "packets_retransmitted": sent["retransmitted"],
            **self._hole_stats(),
            **self.counters,
            **(self._bandwidth.counters if self._bandwidth is not None else _IDLE_BANDWIDTH),
        }
