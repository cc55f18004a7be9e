"""A participant's aiortc client, run inside a network namespace by the TURN tests:

    ip netns exec NS python -m tests.support.netns_bot URL TOKEN --turn tcp|tls --peer ID ...

It connects to Parley's socket.io namespace with its invitation token, takes ``iceServers``
from the welcome (keeping only the TURN URL of the transport under test: aiortc uses one TURN
server), publishes a barcoded picture and prints one JSON line per half second:
``{"participant", "connection", "local_candidate", "frames": {publisher: n}}``. It ends when
its stdin closes or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

import socketio
from aiortc import RTCIceServer

from bench.bot import Bot, _assign_tag
from signaling.namespace import NAMESPACE


def pick(ice_servers: list[dict], turn: str) -> list[RTCIceServer]:
    want = "turns:" if turn == "tls" else "turn:"
    suffix = "?transport=tcp" if turn in ("tcp", "tls") else "?transport=udp"
    out = []
    for server in ice_servers:
        urls = [u for u in server["urls"] if u.startswith(want) and u.endswith(suffix)]
        if urls and "username" in server:
            out.append(RTCIceServer(urls[0], server["username"], server["credential"]))
    return out


def nominated_local_type(bot: Bot) -> str | None:
    try:
        transport = bot.pc.getTransceivers()[0].sender.transport.transport
        pairs = transport.iceGatherer._connection._nominated
        return next(iter(pairs.values())).local_candidate.type
    except (AttributeError, IndexError, StopIteration):
        return None


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--turn", choices=["udp", "tcp", "tls"], required=True)
    ap.add_argument("--consent", action="append", default=[])
    ap.add_argument("--peer", action="append", default=[], help="a publisher's participant id")
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()

    sio = socketio.AsyncClient(reconnection=False)
    welcome: asyncio.Future = asyncio.get_running_loop().create_future()
    sio.on("welcome", lambda msg: welcome.done() or welcome.set_result(msg), namespace=NAMESPACE)
    await sio.connect(
        args.url, namespaces=[NAMESPACE], auth={"token": args.token}, transports=["websocket"]
    )
    msg = await asyncio.wait_for(welcome, 15)
    for peer in args.peer:
        _assign_tag(peer)  # so the barcodes of their pictures name them
    for topic in args.consent:
        cmd = {"type": "record_consent", "topic": topic, "given": True}
        reply = await sio.call("command", {"v": 1, "cmd": cmd}, namespace=NAMESPACE, timeout=10)
        assert reply["ok"], reply
    servers = pick(msg.get("iceServers", []), args.turn)
    print(json.dumps({"participant": msg["participant"], "ice_servers": len(servers)}), flush=True)
    bot = Bot(
        msg["participant"],
        slots=msg["slots"],
        color=(30, 200, 30),
        size=(160, 120),
        ice_servers=servers,
    )
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=60
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda m: bot.set_slot_map(m["slots"]), namespace=NAMESPACE)

    stdin_closed = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or stdin_closed.set())
    try:
        for _ in range(int(args.seconds * 2)):
            frames = {name: st.frames for name, st in bot.stats.items()}
            line = {
                "connection": bot.pc.connectionState,
                "local_candidate": nominated_local_type(bot),
                "frames": frames,
                "unreadable": bot.unreadable_frames,
            }
            print(json.dumps(line), flush=True)
            try:
                await asyncio.wait_for(stdin_closed.wait(), 0.5)
                break
            except TimeoutError:
                pass
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await bot.close()
        await sio.disconnect()
    return 0


# -- for the tests that run it -------------------------------------------------------------------
async def read_until(proc, predicate, within: float):  # noqa: ASYNC109
    """Read the netns bot's JSON lines until one satisfies ``predicate``; that line."""
    seen = None
    try:
        async with asyncio.timeout(within):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"netns bot ended; last line {seen}")
                with contextlib.suppress(ValueError):
                    seen = json.loads(raw)
                    if predicate(seen):
                        return seen
    except TimeoutError:
        raise AssertionError(f"not reached within {within} s; last line {seen}") from None


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
