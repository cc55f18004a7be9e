"""Real aiortc bots connected to a real MediaEngine in the same process (ICE on eth0)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

import pytest

from bench.bot import Bot
from media.engine import MediaConfig, MediaEngine

HOST = "192.0.2.2"  # aioice never offers 127.0.0.1; this machine's own address


class E(NamedTuple):
    publisher: str
    subscriber: str
    kind: str


def mesh(names, kinds=("audio", "video")) -> list[E]:
    return [E(p, s, k) for p in names for s in names if p != s for k in kinds]


class Room:
    """An engine plus bots; records every callback the engine makes."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.bots: dict[str, Bot] = {}
        self.slot_events: list[tuple[str, list[dict]]] = []
        self.hints: list[tuple[str, dict]] = []
        self.states: list[tuple[str, str]] = []

    def on_slots(self, pid, slots):
        self.slot_events.append((pid, slots))
        bot = self.bots.get(pid)
        if bot is not None:
            bot.set_slot_map(slots)

    async def join(self, name: str, **kw) -> Bot:
        bot = Bot(name, **kw)
        self.bots[name] = bot
        answer = await self.engine.accept_offer(name, await bot.create_offer())
        await bot.accept_answer(answer)
        bot.set_slot_map(self.engine.slot_map(name))
        return bot

    async def wait_for(self, predicate, within: float = 10.0, step: float = 0.05):
        """Poll `predicate` until it holds; TimeoutError after `within` seconds."""
        for _ in range(int(within / step)):
            if predicate():
                return
            await asyncio.sleep(step)
        if not predicate():
            raise TimeoutError(f"condition not met within {within} s")


@pytest.fixture
async def room():
    holder: dict = {}

    def on_slots(pid, slots):
        holder["room"].on_slots(pid, slots)

    engine = MediaEngine(
        MediaConfig(ice_host_addresses=[HOST], connect_timeout=10.0),
        on_slots=on_slots,
        on_hint=lambda pid, hint: holder["room"].hints.append((pid, hint)),
        on_peer_state=lambda pid, st: holder["room"].states.append((pid, st)),
    )
    r = holder["room"] = Room(engine)
    await engine.start()
    try:
        yield r
    finally:
        for bot in r.bots.values():
            with contextlib.suppress(Exception):
                await bot.close()
        await engine.close()
