"""The visits log's compaction loop (cluster/visits.py ``compact_forever``): each round runs
``compact`` off the event loop; a round that fails is logged and the next one runs."""

from __future__ import annotations

import asyncio
import threading

from cluster.visits import compact_forever


class Store:
    def __init__(self, rounds: int) -> None:
        self.threads: list[int] = []
        self.rounds = rounds
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def compact(self):
        self.threads.append(threading.get_ident())
        if len(self.threads) == 1:
            raise RuntimeError("a failed round")
        if len(self.threads) >= self.rounds:
            self.loop.call_soon_threadsafe(self.done.set)
        return None


async def test_each_round_runs_in_a_thread_and_a_failed_round_does_not_end_the_loop(caplog):
    store = Store(rounds=3)
    task = asyncio.create_task(compact_forever(store, every_s=0.01))
    try:
        await asyncio.wait_for(store.done.wait(), 10)
    finally:
        task.cancel()
    assert len(store.threads) >= 3
    assert threading.get_ident() not in store.threads  # never on the event loop's thread
    assert "visits log compaction failed" in caplog.text
