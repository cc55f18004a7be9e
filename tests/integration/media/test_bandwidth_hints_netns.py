"""A party's downlink is capped: the server hints the other publisher down, and up again after.

Parley (a real server process) and the mediator (an aiortc bot publishing a pre-encoded
~500 kbit/s picture) are in the root namespace; the party is an aiortc client in a network
namespace (tests/support/netns_bot.py) joined by a veth pair, whose REMB about the mediator's
picture is what media/bandwidth.py turns into ``{"max_bitrate": bps}`` hints for the mediator.
A tbf cap of 300 kbit/s on the veth must bring a hint at or below about the cap within a few
seconds, and the hints must stay there while the cap lasts (~4 s); lifting it must bring a hint
of at least 1.5 x the lowest one, every rise within media/bandwidth.py UP_STEP.

The mediator's bot does not obey the hints (its clip is pre-encoded), so under the cap it keeps
overfilling the link and the party's estimate falls further than a browser's would (to the
150 kbit/s floor in most runs); how fast it climbs back after the lift is aiortc's receive-side
estimator (~8 %/s once it sees the link free), which is what makes the up-wait the long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time

import pytest
import socketio

from bench.bot import Bot, _assign_tag
from media import bandwidth as bw
from signaling.namespace import NAMESPACE
from tests.support.netns import entered_or_skip
from tests.support.netns_bot import read_until
from tests.support.netpath import PhoneNetns
from tests.support.procs import ROOT
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
CONSENTS = ("online_mediation", "session_rules")
CAP_KBIT = 300
JOIN_WITHIN = 60  # joining on a loaded two-core machine
DOWN_WITHIN = 15  # the cap is on → a hint at or below ~the cap
UP_WITHIN = 30  # the cap is off → a hint clearly above the down hint
HOLD_LINES = 8  # the cap stays on for 8 more of the party's half-second lines (~4 s)


@pytest.fixture
def netns():
    yield from entered_or_skip(PhoneNetns)


async def until(predicate, within: float, what: str):  # noqa: ASYNC109
    end = time.monotonic() + within
    while time.monotonic() < end:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within} s")


async def drain(proc, seen: list[int]):
    """Keep reading the bot's lines so its pipe never fills; count them in seen[0]."""
    with contextlib.suppress(Exception):
        while await proc.stdout.readline():
            seen[0] += 1


async def test_cap_moves_the_other_publisher_down_and_lifting_it_moves_it_back_up(tmp_path, netns):
    server = ServerProcess(
        tmp_path / "data",
        "--host",
        netns.host_ip,
        env={"PARLEY_ICE_HOST_ADDRESSES": netns.host_ip},
    )
    party = sio = mediator = reader = None
    lines_seen = [0]
    hints: list[tuple[float, int]] = []  # (monotonic time, max_bitrate) the mediator was sent
    try:
        server.start(timeout=60)
        url = server.links["mediator"][0].split("/j/")[0]
        token = {role: [u.split("/j/")[1] for u in urls] for role, urls in server.links.items()}

        sio = socketio.AsyncClient(reconnection=False)
        welcome = asyncio.get_running_loop().create_future()
        sio.on("welcome", lambda m: welcome.done() or welcome.set_result(m), namespace=NAMESPACE)

        def on_hint(h):
            if isinstance(h, dict) and "max_bitrate" in h:
                hints.append((time.monotonic(), int(h["max_bitrate"])))

        sio.on("hint", on_hint, namespace=NAMESPACE)
        await sio.connect(
            url,
            namespaces=[NAMESPACE],
            auth={"token": token["mediator"][0]},
            transports=["websocket"],
        )
        msg = await asyncio.wait_for(welcome, 15)
        mid = msg["participant"]
        mediator = Bot(
            mid, slots=msg["slots"], color=(200, 30, 30), size=(320, 240), bitrate=500_000
        )
        reply = await sio.call(
            "offer",
            {"v": 1, "sdp": await mediator.create_offer()},
            namespace=NAMESPACE,
            timeout=30,
        )
        assert reply["ok"], reply
        await mediator.accept_answer(reply["sdp"])
        mediator.set_slot_map(reply["slots"])
        sio.on("slots", lambda m: mediator.set_slot_map(m["slots"]), namespace=NAMESPACE)

        argv = [sys.executable, "-m", "tests.support.netns_bot", url, token["party"][0]]
        argv += ["--turn", "udp", "--peer", mid, "--seconds", "120"]
        argv += [a for c in CONSENTS for a in ("--consent", c)]
        party = await asyncio.create_subprocess_exec(
            *netns.exec(["env", f"PYTHONPATH={ROOT}", *argv]),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        first = await read_until(party, lambda line: "participant" in line, JOIN_WITHIN)
        pid = first["participant"]
        _assign_tag(pid)
        await read_until(party, lambda line: "connection" in line, JOIN_WITHIN)
        reply = await sio.call(
            "command",
            {"v": 1, "cmd": {"type": "admit", "participant": pid}},
            namespace=NAMESPACE,
            timeout=10,
        )
        assert reply["ok"], reply
        await read_until(party, lambda line: line.get("frames", {}).get(mid, 0) > 10, JOIN_WITHIN)
        reader = asyncio.create_task(drain(party, lines_seen))

        # the clean link: the party's REMB says it takes the whole picture (first hint above cap)
        await until(
            lambda: hints and hints[-1][1] > 1.3 * CAP_KBIT * 1000,
            JOIN_WITHIN,
            "a hint above the cap on the clean link",
        )
        before = hints[-1][1]

        netns.set_rate(CAP_KBIT)
        t_cap = time.monotonic()
        down = await until(
            lambda: next(
                (h for h in hints if h[0] > t_cap and h[1] <= 1.1 * CAP_KBIT * 1000), None
            ),
            DOWN_WITHIN,
            f"a hint ≤ 1.1 × {CAP_KBIT} kbit/s under the cap",
        )
        # the cap stays on for HOLD_LINES more status lines of the party (its clock: one a
        # half second): the length of the impairment, while the hints must stay down
        held_from = lines_seen[0]
        await until(lambda: lines_seen[0] >= held_from + HOLD_LINES, DOWN_WITHIN, "the hold")
        under = [b for t, b in hints if t >= down[0]]
        assert max(under) <= 1.1 * CAP_KBIT * 1000, under
        low = min(under)  # what the lift starts from

        netns.set_rate(None)
        t_lift = time.monotonic()
        up = await until(
            lambda: next((h for h in hints if h[0] > t_lift and h[1] >= 1.5 * low), None),
            UP_WITHIN,
            f"a hint ≥ 1.5 × {low} bit/s after the cap is lifted",
        )
        # the way back up is a ramp: no step above UP_STEP × the hint before it
        seq = [b for t, b in hints if t > down[0]]
        steps = [b / a for a, b in zip(seq, seq[1:], strict=False) if b > a]
        assert all(s <= bw.UP_STEP + 0.01 for s in steps), seq
        print(
            "BANDWIDTH_HINTS",
            json.dumps(
                {
                    "load": os.getloadavg()[0],
                    "before_kbit": before // 1000,
                    "down_kbit": down[1] // 1000,
                    "down_after_s": round(down[0] - t_cap, 2),
                    "low_kbit": low // 1000,
                    "held_s": round(t_lift - down[0], 2),
                    "up_kbit": up[1] // 1000,
                    "up_after_s": round(up[0] - t_lift, 2),
                    "hints_kbit": [(round(t - t_cap, 1), b // 1000) for t, b in hints],
                }
            ),
        )
    finally:
        if party is not None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError):
                party.stdin.close()
            try:
                await asyncio.wait_for(party.wait(), 15)
            except TimeoutError:
                party.kill()
                await party.wait()
        if reader is not None:
            reader.cancel()
        if mediator is not None:
            await mediator.close()
        if sio is not None and sio.connected:
            await sio.disconnect()
        server.stop()
