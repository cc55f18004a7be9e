"""200 join/leave cycles leave no task, thread, file descriptor or peer object behind."""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import threading
import weakref

import pytest

from bench.bot import Bot
from tests.integration.media.conftest import E

HOST_ID = "p-host"
CYCLES = 200
BATCH = 5


def counts() -> dict:
    return {
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
    }


async def settle(baseline: dict | None = None, rounds: int = 40) -> dict:
    """Give closing transports a moment to finish, then count."""
    now = counts()
    for _ in range(rounds):
        if baseline is not None and all(now[k] <= baseline[k] for k in now):
            break
        await asyncio.sleep(0.1)
        gc.collect()
        now = counts()
    return now


async def cycle(room, name: str, peers: list) -> None:
    bot = Bot(name, slots=1, color=(200, 200, 40), tone_hz=300)
    answer = await room.engine.accept_offer(name, await bot.create_offer())
    peers.append(weakref.ref(room.engine.peers[name]))
    await bot.accept_answer(answer)
    room.engine.apply_plan(
        [E(HOST_ID, name, "video"), E(HOST_ID, name, "audio"), E(name, HOST_ID, "video")]
    )
    await bot.wait_connected(within=10)
    await room.engine.close_peer(name, "left")
    await bot.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_join_leave_cycles_do_not_leak(room):
    host = await room.join(HOST_ID, slots=1, color=(40, 200, 60), tone_hz=440)
    await host.wait_connected()
    peers: list = []
    for i in range(BATCH):  # warm-up: lazily created executors, caches, codecs
        await cycle(room, f"p-warm{i}", peers)
    baseline = await settle()
    for start in range(0, CYCLES, BATCH):
        await asyncio.gather(*(cycle(room, f"p-{start + j}", peers) for j in range(BATCH)))
    after = await settle(baseline)
    print(f"\nleaks: baseline={baseline} after={after} cycles={CYCLES}")
    tasks = collections.Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks())
    assert after["tasks"] <= baseline["tasks"] + 2, (baseline, after, tasks)
    assert after["threads"] <= baseline["threads"] + 1, (baseline, after)
    assert after["fds"] <= baseline["fds"] + 4, (baseline, after)
    gc.collect()
    alive = [r for r in peers if r() is not None]
    assert not alive, f"{len(alive)} closed PeerSessions are still referenced"
    assert set(room.engine.peers) == {HOST_ID}
    assert room.engine.stats()["peers_created"] == CYCLES + BATCH + 1
