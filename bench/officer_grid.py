"""What the officer's grid costs the server: 16 live two-party visits with and without the
console's grid of keyframe thumbnails subscribed, in one run.

    .venv/bin/python -m bench.officer_grid --visits 16 --window 20

Reuses bench/run_load.py's orchestration and bench/load_bots.py's bots (V visits x 2 publishers,
VGA VP8 at 15 fps + Opus, full mesh inside each visit); the server process is this module's
``serve``: bench/load_server.py's plan plus, for each grid participant (room ``grid``), one
keyframes-only edge (``keyframe_interval`` 2 s, as ``rooms.plan.thumbnails`` gives the officer's
grid) from every publisher of every visit. The grid is two receive-only aiortc peers of 16
slots each (an aiortc offer of 32 slots is larger than the 64 KiB the server accepts); each
takes half of the visits. Runs alternate off / on / on / off so slow drift of the shared
machine cancels out. Reported: server CPU on vs off (the target is at most 1.2x), packets/s
forwarded on vs off (a measure that does not depend on the machine's load: per-packet work is
most of the server's), thumbnails/s forwarded, keyframes/s asked of and received from the
publishers.

    .venv/bin/python -m bench.officer_grid --replay 60 --visits 16

A fixed amount of work where the machine is too busy for the real-time runs: ``--replay``
media seconds of the same clips pushed as fast as possible through the real ``Forwarder``,
``Subscription`` and ``SlotTrack`` (each visit's two publishers, each to the other end; no
recorder, which only adds to the baseline), into outputs that count packets instead of
encrypting and sending them; with the grid, one keyframes-only subscription per publisher more.
Reported: this process's CPU seconds per arm (alternated, repeated), the packets each arm
receives and sends, and a modelled server CPU ratio that adds the per-packet costs measured
before (docs/media.md: ~20 us of Python per arriving packet in aiortc, ~3.6 us relay work and
7-15 us ``sendto`` per packet sent) to the measured forwarding CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import NamedTuple

import msgspec
from aiohttp import web

from bench import run_load
from bench.load_server import LoadServer, LoopLag, OfferRequest, run_http
from media.engine import MediaConfig, MediaEngine
from media.errors import MediaError

GRID_ROOM = "grid"
GRID_INTERVAL = 2.0  # as signaling/visits_officer.GRID_INTERVAL
INGEST_S_PER_PACKET = 20e-6  # docs/media.md: aiortc's Python per arriving packet
SEND_S_PER_PACKET = 3.6e-6 + 11e-6  # docs/media.md: relay work + sendto (7-15 us, middle)
GRID_PEERS = 2  # receive-only peers making up one grid
SLOTS_PER_GRID_PEER = 16


class Thumb(NamedTuple):
    publisher: str
    subscriber: str
    kind: str
    keyframe_interval: float


class GridLoadServer(LoadServer):
    """load_server's rooms; members of room ``grid`` get thumbnails of every other room."""

    def __init__(self, engine, lag) -> None:
        super().__init__(engine, lag)
        self.started = time.monotonic()

    def plan(self) -> list:
        visits = sorted(r for r in self.rooms if r != GRID_ROOM)
        grids = sorted(self.rooms.get(GRID_ROOM, {}))
        edges = [e for e in super().plan() if e.subscriber not in grids]
        for i, grid in enumerate(grids):
            for room in visits[i :: len(grids)]:
                for pub in self.rooms[room].values():
                    if pub.publish:
                        edges.append(Thumb(pub.participant, grid, "video", GRID_INTERVAL))
        return edges

    async def offer(self, request: web.Request) -> web.Response:
        try:
            req = msgspec.json.decode(await request.read(), type=OfferRequest)
        except msgspec.DecodeError as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        slots = SLOTS_PER_GRID_PEER if req.room == GRID_ROOM else None
        try:
            answer = await self.engine.accept_offer(req.participant, req.sdp, max_slots=slots)
        except MediaError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.rooms.setdefault(req.room, {})[req.participant] = req
        self.engine.apply_plan(self.plan())
        return web.json_response({"sdp": answer})

    async def stats(self, request: web.Request) -> web.Response:
        stats = self.engine.stats()
        subs = [
            s
            for peer in self.engine.peers.values()
            for pub in peer.publications.values()
            for s in pub.forwarder.subscriptions.values()
        ]
        stats["grid_thumbnails_forwarded"] = sum(
            s.frames_forwarded for s in subs if s.keyframe_interval
        )
        stats["grid_uptime_s"] = round(time.monotonic() - self.started, 2)
        return web.json_response(stats)


async def serve(port: int, host: str) -> None:
    engine = MediaEngine(MediaConfig(ice_host_addresses=[host], connect_timeout=60.0))
    await engine.start()
    lag = LoopLag()
    lag.start()
    try:
        await run_http(GridLoadServer(engine, lag), port)
    finally:
        lag.stop()
        await engine.close()


COUNTERS = (
    "grid_thumbnails_forwarded",
    "grid_uptime_s",
    "keyframes_received",
    "keyframe_requests_sent",
    "frames_forwarded",
    "packets_sent",
    "peers_connected",
)


class GridServer(run_load.ParleyServer):
    """This module's ``serve`` in its own process."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        port = run_load.free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = ["serve", "--port", str(port), "--host", run_load.HOST]
        self.child = run_load.Child("bench.officer_grid", argv, f"server[{mode}]")
        self.pid = self.child.pid
        self.verify = "bytes"

    def counters(self, stats: dict) -> dict:
        return {k: v for k, v in stats.items() if k in COUNTERS}


def with_grid(scenario: run_load.Scenario) -> run_load.Scenario:
    grid = [
        run_load.Participant(f"grid-{i}", GRID_ROOM, False, SLOTS_PER_GRID_PEER, False)
        for i in range(GRID_PEERS)
    ]
    return run_load.Scenario(
        scenario.name + "+grid",
        [*scenario.rooms, grid],
        scenario.fps,
        scenario.bitrate,
        notes=[*scenario.notes, f"officer grid: {GRID_PEERS} peers, keyframes every 2 s"],
    )


def compare(off: list[dict], on: list[dict], visits: int) -> dict:
    def mean(runs: list[dict], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    def per_s(runs: list[dict], key: str) -> float:
        return sum(
            r["server_counters"][key] / r["server_counters"]["grid_uptime_s"] for r in runs
        ) / len(runs)

    cores_off, cores_on = mean(off, "server_cores"), mean(on, "server_cores")
    pps_off, pps_on = mean(off, "packets_per_s"), mean(on, "packets_per_s")
    return {
        "visits": visits,
        "server_cores_off": round(cores_off, 4),
        "server_cores_on": round(cores_on, 4),
        "cpu_on_over_off": round(cores_on / cores_off, 3),
        "packets_per_s_off": round(pps_off, 1),
        "packets_per_s_on": round(pps_on, 1),
        "packets_on_over_off": round(pps_on / pps_off, 4),
        "thumbnails_per_s_on": round(per_s(on, "grid_thumbnails_forwarded"), 2),
        "keyframes_in_per_s_off": round(per_s(off, "keyframes_received"), 2),
        "keyframes_in_per_s_on": round(per_s(on, "keyframes_received"), 2),
        "keyframe_requests_per_s_off": round(per_s(off, "keyframe_requests_sent"), 2),
        "keyframe_requests_per_s_on": round(per_s(on, "keyframe_requests_sent"), 2),
        "delivery_ratio_off": round(mean(off, "delivery_ratio"), 4),
        "delivery_ratio_on": round(mean(on, "delivery_ratio"), 4),
        "machine_busy": [r.get("machine_busy") for r in off + on],
        "verdicts": [r.get("verdict") for r in off + on],
    }


class _Packet:
    """What the forwarding path reads of an aiortc packet: its payload."""

    class extensions:  # noqa: N801 - mirrors aiortc's attribute
        audio_level = None

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._data = payload


class _CountingOutput:
    """A slot's output that counts what the relay would encrypt and send."""

    def __init__(self) -> None:
        self.packets = 0

    def send(self, frame, timestamp: int) -> bool:
        self.packets += len(frame.packets)
        return True


def replay(visits: int, seconds: float, grid: bool) -> dict:
    """``seconds`` of 2 x ``visits`` publishers (VGA VP8 15 fps with a keyframe every 2 s, Opus
    50 packets/s) through the real forwarding objects on a simulated clock; CPU and packets."""
    import asyncio

    from bench import clip
    from media.forwarder import Forwarder
    from media.rtp import EncodedFrame
    from media.slot import SlotTrack

    video = clip.video_clip(color=(200, 30, 30), tag=5, frames=60, bitrate=500_000)
    audio = clip.audio_clip(tone_hz=440)

    def packets(data: bytes) -> list[_Packet]:
        return [_Packet(data[i : i + 1100]) for i in range(0, len(data), 1100)]

    vframes = [packets(f) for f in video.frames]
    keys = set(video.keyframe_indices)
    apackets = [packets(p) for p in audio.packets]
    now = [0.0]
    loop = asyncio.new_event_loop()  # the forwarder arms its timers on the running loop
    outputs: list[_CountingOutput] = []
    received = [0]

    async def run() -> float:
        pubs = []
        for v in range(visits):
            for end in range(2):
                name = f"v{v}-{end}"
                fwd = {
                    k: Forwarder(name, k, lambda: True, clock=lambda: now[0])
                    for k in ("audio", "video")
                }
                for kind, f in fwd.items():
                    out = _CountingOutput()
                    outputs.append(out)
                    f.subscribe(f"v{v}-{1 - end}", SlotTrack(kind, out))
                    if grid and kind == "video":
                        out = _CountingOutput()
                        outputs.append(out)
                        f.subscribe("grid", SlotTrack(kind, out), GRID_INTERVAL)
                pubs.append(fwd)
        for f in (f for fwd in pubs for f in fwd.values()):
            for sub in f.subscriptions.values():
                sub.waiting_keyframe = False  # measured from the first frame on, in both arms
        cpu = time.process_time()
        for n in range(int(seconds * 15)):
            now[0] = n / 15
            i = n % len(vframes)
            for fwd in pubs:
                fwd["video"].deliver(EncodedFrame(vframes[i], n * 6000, i in keys))
                for j in range(3):
                    k = 3 * n + j
                    fwd["audio"].deliver(EncodedFrame(apackets[k % len(apackets)], k * 960, True))
        busy = time.process_time() - cpu
        video_in = sum(len(vframes[n % len(vframes)]) for n in range(int(seconds * 15)))
        audio_in = sum(fwd["audio"].frames_in for fwd in pubs)  # one packet per Opus frame
        received[0] = video_in * len(pubs) + audio_in
        for f in (f for fwd in pubs for f in fwd.values()):
            f.close("done")
        return busy

    try:
        busy = loop.run_until_complete(run())
    finally:
        loop.close()
    return {
        "grid": grid,
        "cpu_s": round(busy, 4),
        "packets_in": received[0],
        "packets": sum(o.packets for o in outputs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="the server process (started by the orchestrator)")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", required=True)
    parser.add_argument("--visits", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="off/on pairs, alternated")
    parser.add_argument("--bot-procs", type=int, default=2)
    parser.add_argument("--join-timeout", type=float, default=180.0)
    parser.add_argument("--json", default=None, help="write every run's figures here")
    parser.add_argument(
        "--replay", type=float, default=0, help="media seconds: fixed work, in process"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=logging.WARNING)
        import uvloop  # as server.py runs Parley by default

        uvloop.run(serve(args.port, args.host))
        return 0
    if args.replay:
        load = os.getloadavg()
        arms: dict[str, list[dict]] = {"off": [], "on": []}
        for mode in ["off", "on", "on", "off"] * args.repeat:
            arms[mode].append(replay(args.visits, args.replay, mode == "on"))
        cpu = {m: sum(r["cpu_s"] for r in runs) / len(runs) for m, runs in arms.items()}
        pk = {m: runs[0]["packets"] for m, runs in arms.items()}
        pin = arms["off"][0]["packets_in"]
        model = {m: pin * INGEST_S_PER_PACKET + pk[m] * SEND_S_PER_PACKET + cpu[m] for m in arms}
        out = {
            "visits": args.visits,
            "media_seconds": args.replay,
            "cpu_s_off": [r["cpu_s"] for r in arms["off"]],
            "cpu_s_on": [r["cpu_s"] for r in arms["on"]],
            "forwarding_cpu_on_over_off": round(cpu["on"] / cpu["off"], 3),
            "packets_in": pin,
            "packets_off": pk["off"],
            "packets_on": pk["on"],
            "packets_on_over_off": round(pk["on"] / pk["off"], 4),
            "thumbnail_packets_per_s": round((pk["on"] - pk["off"]) / args.replay, 1),
            "modelled_server_cores_off": round(model["off"] / args.replay, 4),
            "modelled_server_cores_on": round(model["on"] / args.replay, 4),
            "modelled_server_cpu_on_over_off": round(model["on"] / model["off"], 3),
            "code": run_load.code_state(),
            "loadavg_before": [round(x, 2) for x in load],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(out, indent=2))
        return 0
    ns = run_load.rooms_args(
        participants=2,
        warmup=args.warmup,
        window=args.window,
        bot_procs=args.bot_procs,
        join_timeout=args.join_timeout,
    )
    plain = run_load.build_scenario(ns, args.visits)
    scenarios = {"off": plain, "on": with_grid(plain)}
    run_load.make_server = lambda mode, a: GridServer(mode, a)
    load = os.getloadavg()
    print(f"code: {run_load.code_state()}; load average before: {load[0]:.2f} {load[1]:.2f}")
    order = ["off", "on", "on", "off"] * ((args.repeat + 1) // 2)
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for mode in order[: 2 * args.repeat]:
        before = os.getloadavg()[0]
        result = run_load.run_mode(scenarios[mode], mode, ns)
        result["loadavg_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
        runs[mode].append(result)
        run_load.print_run(scenarios[mode].name, mode, result)
    summary = compare(runs["off"], runs["on"], args.visits)
    summary["code"] = run_load.code_state()
    summary["loadavg_1min"] = [r["loadavg_1min"] for r in runs["off"] + runs["on"]]
    print("\n== officer grid: on vs off ==")
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "summary": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
