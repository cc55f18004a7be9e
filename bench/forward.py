"""Forwarding cost of one room: a MediaEngine in its own process, K aiortc bots in this one.

    .venv/bin/python -m bench.forward --participants 4 --fps 15 --seconds 20

The engine runs alone in a child process so that its CPU time (utime + stime from /proc) is the
server's cost and nothing else. Bots publish a pre-encoded VP8 640x480 clip + Opus (no encoding)
and decode what they receive, reading the frame-number barcodes. Printed figures:

* server CPU: % of one core, ms per forwarded stream-second (a stream: one publisher to one
  subscriber, its video plus its audio unless --no-audio), and
  µs per forwarded RTP packet — the units of the Janus comparison in issue 3;
* forwarded packets/s and frames/s, subscriber frame rate, frame loss (barcode gaps),
  join → first remote frame (p50/p95), end-to-end frame latency (p50/p95, same clock);
* server RSS and RSS per participant;
* the bots' own CPU: when they use most of a core the figures are limited by the harness, and
  the bench says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- the server side (child process) ------------------------------------------------------------


def engine_main(conn, host: str | None) -> None:
    """Run a MediaEngine and answer requests from the parent over a pipe until told to stop."""
    from media.engine import MediaConfig, MediaEngine

    class Edge:
        def __init__(self, publisher, subscriber, kind):
            self.publisher, self.subscriber, self.kind = publisher, subscriber, kind

    async def serve() -> None:
        engine = MediaEngine(MediaConfig(ice_host_addresses=[host] if host else None))
        await engine.start()
        loop = asyncio.get_running_loop()
        try:
            while True:
                op, *args = await loop.run_in_executor(None, conn.recv)
                if op == "offer":
                    conn.send(await engine.accept_offer(*args))
                elif op == "plan":
                    engine.apply_plan(Edge(*e) for e in args[0])
                    conn.send(True)
                elif op == "slot_map":
                    conn.send(engine.slot_map(args[0]))
                elif op == "stats":
                    conn.send(engine.stats())
                elif op == "stop":
                    break
        finally:
            await engine.close()
            conn.send("stopped")

    asyncio.run(serve())


# -- the client side (this process) ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args) -> dict:
    from bench.bot import Bot

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=engine_main, args=(child, args.host), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()

    async def call(*msg):
        parent.send(msg)
        return await loop.run_in_executor(None, parent.recv)

    names = [f"bench-{i}" for i in range(args.participants)]
    publishers = args.publishers or args.participants
    kinds = ("video",) if args.no_audio else ("audio", "video")
    palette = [
        (220, 40, 40),
        (40, 200, 60),
        (40, 60, 220),
        (220, 200, 40),
        (200, 40, 200),
        (40, 200, 200),
    ]
    bots: list[Bot] = []
    try:
        await call("stats")  # the engine is up: its imports are the baseline memory
        base_rss = rss_mb(proc.pid)
        join_times = []
        for i, name in enumerate(names):
            publishes = i < publishers
            bot = Bot(
                name,
                slots=min(publishers, args.participants - 1),
                color=palette[i % len(palette)] if publishes else None,
                tone_hz=300 + 100 * i if publishes and not args.no_audio else None,
                size=(args.width, args.height),
                fps=args.fps,
                bitrate=args.bitrate,
            )
            bots.append(bot)
            started = time.monotonic()
            await bot.accept_answer(await call("offer", name, await bot.create_offer()))
            await bot.wait_connected(within=15)
            join_times.append(time.monotonic() - started)
        edges = [(p, s, k) for p in names[:publishers] for s in names if p != s for k in kinds]
        plan_at = time.monotonic()
        await call("plan", edges)
        for bot in bots:
            bot.set_slot_map(await call("slot_map", bot.name))
        await asyncio.sleep(args.warmup)

        s0, c0, b0, t0 = await call("stats"), cpu_seconds(proc.pid), cpu_seconds(), time.monotonic()
        f0 = {b.name: {p: st.frames for p, st in b.stats.items()} for b in bots}
        g0 = {b.name: {p: st.gaps for p, st in b.stats.items()} for b in bots}
        await asyncio.sleep(args.seconds)
        s1, c1, b1, t1 = await call("stats"), cpu_seconds(proc.pid), cpu_seconds(), time.monotonic()
        window = t1 - t0
        server_cpu, bots_cpu = c1 - c0, b1 - b0
        video_streams = sum(1 for p, _, k in edges if k == "video")
        packets = s1["packets_sent"] - s0["packets_sent"]
        frames_out = s1["frames_forwarded"] - s0["frames_forwarded"]
        fps, loss, first, lat = [], [], [], []
        for b in bots:
            for p, st in b.stats.items():
                got = st.frames - f0[b.name].get(p, 0)
                gaps = st.gaps - g0[b.name].get(p, 0)
                fps.append(got / window)
                loss.append(gaps / max(1, got + gaps))
                if st.first_frame_clock is not None:
                    first.append(st.first_frame_clock - plan_at)
                lat.extend(st.latencies)
        rss = rss_mb(proc.pid)
        return {
            "participants": args.participants,
            "publishers": publishers,
            "media": f"{args.width}x{args.height}@{args.fps} VP8 {args.bitrate // 1000} kbit/s"
            + ("" if args.no_audio else " + Opus"),
            "window_s": round(window, 1),
            "forwarded_video_streams": video_streams,
            "server_cpu_pct_of_core": round(100 * server_cpu / window, 1),
            "server_ms_per_forwarded_stream_s": round(
                1000 * server_cpu / (window * video_streams), 2
            ),
            "server_us_per_packet": round(1e6 * server_cpu / packets, 1) if packets else None,
            "forwarded_packets_per_s": round(packets / window),
            "forwarded_frames_per_s": round(frames_out / window),
            "subscriber_fps_min": round(min(fps), 1) if fps else None,
            "subscriber_fps_mean": round(statistics.mean(fps), 1) if fps else None,
            "frame_loss_pct_max": round(100 * max(loss), 2) if loss else None,
            "join_offer_to_connected_p95_s": round(percentile(join_times, 0.95), 3),
            "plan_to_first_frame_p50_s": round(percentile(first, 0.5), 3) if first else None,
            "plan_to_first_frame_p95_s": round(percentile(first, 0.95), 3) if first else None,
            "latency_p50_ms": round(1000 * percentile(lat, 0.5), 1) if lat else None,
            "latency_p95_ms": round(1000 * percentile(lat, 0.95), 1) if lat else None,
            "server_rss_mb": round(rss, 1),
            "server_rss_per_participant_mb": round((rss - base_rss) / args.participants, 2),
            "bots_cpu_pct_of_core": round(100 * bots_cpu / window, 1),
            "harness_saturated": bots_cpu / window > 0.85,
            "keyframe_requests_sent": s1["keyframe_requests_sent"],
            "frames_unsent": s1["frames_unsent"],
        }
    finally:
        for bot in bots:
            await bot.close()
        if proc.is_alive():
            parent.send(("stop",))
            proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--bitrate", type=int, default=800_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--host", default="192.0.2.2", help="ICE host address (never 127.0.0.1)")
    ap.add_argument("--publishers", type=int, default=0, help="only the first N publish (0: all)")
    ap.add_argument("--no-audio", action="store_true", help="video only (the Janus comparison)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.participants < 2:
        ap.error("a room needs at least 2 participants")
    import aioice.ice

    host = args.host
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [host]  # the bots' side
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34} {value}")
        if result["harness_saturated"]:
            print("\nWARNING: the bots used most of a core; figures are limited by the harness.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
