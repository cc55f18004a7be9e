"""The bench's server process: one media engine behind a tiny local HTTP endpoint.

    .venv/bin/python -m bench.load_server --mode passthrough --port 8765 --host 192.0.2.2

Runs alone in its process so that bench/run_load.py can read its CPU from /proc. `--mode
passthrough` is Parley's `MediaEngine`; `--mode reencode` is the decode + per-subscriber encode
baseline of bench/reencode.py. Rooms are implicit: each offer names its room and whether the
participant publishes, and the plan is every publisher of a room to every other member of it.

    POST /offer  {"room", "participant", "publish", "sdp"} -> {"sdp"}   (or 400 {"error"})
    GET  /slots  -> {participant: slot map}
    GET  /stats  -> the engine's counters
    GET  /lag    -> event-loop lag percentiles since the last `?reset=1`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import NamedTuple

import msgspec
from aiohttp import web

from media.engine import MediaConfig, MediaEngine
from media.errors import MediaError

KINDS = ("audio", "video")


class OfferRequest(msgspec.Struct, forbid_unknown_fields=True):
    room: str
    participant: str
    publish: bool
    sdp: str
    audio: bool = True


class PlanEdge(NamedTuple):
    publisher: str
    subscriber: str
    kind: str


class LoopLag:
    """How late the event loop runs a timer: the delay any packet handler can also suffer.

    A task sleeps `period` again and again and records how much later than asked it woke up.
    The bench resets it at the start of its window and reads percentiles at the end.
    """

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.samples.append(loop.time() - due)
            if len(self.samples) > 100_000:  # bounded even if nobody resets it
                del self.samples[:50_000]

    def summary(self, reset: bool) -> dict:
        ordered = sorted(self.samples)
        if reset:
            self.samples = []
        if not ordered:
            return {"lag_samples": 0}
        return {
            "lag_samples": len(ordered),
            "lag_ms_p50": round(1000 * ordered[len(ordered) // 2], 2),
            "lag_ms_p95": round(1000 * ordered[int(len(ordered) * 0.95)], 2),
            "lag_ms_max": round(1000 * ordered[-1], 2),
        }

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LoadServer:
    """Holds the engine and room membership; rebuilds the plan after every join."""

    def __init__(self, engine, lag: LoopLag | None = None) -> None:
        self.engine = engine
        self.lag = lag
        self.rooms: dict[str, dict[str, OfferRequest]] = {}

    def plan(self) -> list[PlanEdge]:
        edges = []
        for members in self.rooms.values():
            for pub in members.values():
                if not pub.publish:
                    continue
                kinds = KINDS if pub.audio else ("video",)
                for sub in members:
                    if sub != pub.participant:
                        edges.extend(PlanEdge(pub.participant, sub, k) for k in kinds)
        return edges

    async def offer(self, request: web.Request) -> web.Response:
        try:
            req = msgspec.json.decode(await request.read(), type=OfferRequest)
        except msgspec.DecodeError as exc:  # malformed JSON or a wrong shape
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        try:
            answer = await self.engine.accept_offer(req.participant, req.sdp)
        except MediaError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.rooms.setdefault(req.room, {})[req.participant] = req
        self.engine.apply_plan(self.plan())
        return web.json_response({"sdp": answer})

    async def slots(self, request: web.Request) -> web.Response:
        return web.json_response({pid: self.engine.slot_map(pid) for pid in self.engine.peers})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.engine.stats())

    async def lag_summary(self, request: web.Request) -> web.Response:
        """GET /lag?reset=1 starts a window; GET /lag reads it."""
        if self.lag is None:
            return web.json_response({"lag_samples": 0})
        return web.json_response(self.lag.summary(request.query.get("reset") == "1"))


def make_engine(mode: str, host: str):
    if mode == "passthrough":
        return MediaEngine(MediaConfig(ice_host_addresses=[host], connect_timeout=60.0))
    from bench.reencode import ReencodeEngine

    return ReencodeEngine(ice_host_addresses=[host])


async def run_http(server, port: int) -> None:
    """Serve a load server's offer/slots/stats/lag endpoints on 127.0.0.1 until SIGTERM/SIGINT."""
    app = web.Application(client_max_size=256 * 1024)
    app.router.add_post("/offer", server.offer)
    app.router.add_get("/slots", server.slots)
    app.router.add_get("/stats", server.stats)
    app.router.add_get("/lag", server.lag_summary)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve(mode: str, port: int, host: str, loop_lag: bool = True) -> None:
    engine = make_engine(mode, host)
    await engine.start()
    lag = LoopLag() if loop_lag else None
    if lag is not None:
        lag.start()
    try:
        await run_http(LoadServer(engine, lag), port)
    finally:
        if lag is not None:
            lag.stop()
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bench server process")
    parser.add_argument("--mode", choices=("passthrough", "reencode"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True, help="the address ICE offers")
    parser.add_argument("--rcvbuf", type=int, default=0, help="UDP receive buffer, bytes")
    parser.add_argument(
        "--no-loop-lag", action="store_true", help="no event-loop lag probe (it costs CPU)"
    )
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    if args.rcvbuf:
        from bench.run_load import set_udp_receive_buffer

        set_udp_receive_buffer(args.rcvbuf)
    logging.basicConfig(level=logging.WARNING)
    main_coroutine = serve(args.mode, args.port, args.host, loop_lag=not args.no_loop_lag)
    if args.event_loop == "uvloop":  # as server.py runs Parley by default
        import uvloop

        uvloop.run(main_coroutine)
    else:
        asyncio.run(main_coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
