"""Cost of the visits database on one machine's file against a cluster's copy kept in step
through Redis (cluster/visits.py; docs/benchmarks.md).

    python -m bench.visits_store [--n 500] [--log 20000] [--redis URL]

In one run, for each store, each operation in its own turn of the event loop: a read
(``Reservations.get``, what a page does per booking), a booking made and cancelled (two write
transactions, each with its log and holds), and a read on a second machine's copy right after
the first machine wrote (the catch-up of one entry). Then the log's compaction: ``--log``
writes (bookings made and cancelled), a new machine catching up by replaying all of them, the
snapshot taken (``compact``: its time and size against the copy's file), and another new
machine starting from the snapshot.
Prints p50/p99/max in ms. Without ``--redis`` a redis-server is started on a free port with
deploy/redis/redis.conf (AOF, ``appendfsync always``) and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from bench.ledger_append import _redis_server
from cluster.visits import RedisVisitStore
from tests.support.province import NOW, build
from visits.reservations import Request, Reservations
from visits.store import VisitStore

START = dt.datetime(2030, 1, 8, 9, 0)


def _figures(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[max(0, int(len(times) * 0.99) - 1)] * 1000, 3),
        "max_ms": round(times[-1] * 1000, 3),
    }


async def _measure(store, n: int, other=None) -> dict:
    """Each operation in its own turn of the event loop, as each request is in the server."""
    _, _, res, ids = build(None, store=store)
    read = Request(ids["a2"], "bx-2", "pa-1", START + dt.timedelta(hours=1), 15, (ids["a2v0"],))
    bid = res.request("staff:op", read, NOW)
    request = Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],))
    reads, writes, catch_up = [], [], []
    other_res = Reservations(other) if other is not None else None
    for _ in range(n):
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        res.get(bid)
        reads.append(time.perf_counter() - t0)
    for _ in range(n // 2):
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        made = res.request("staff:op", request, NOW)
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res.cancel("staff:op", made, side="bureau", reason="family_request", now=NOW)
        writes.append(time.perf_counter() - t0)
        if other_res is not None:
            await asyncio.sleep(0)
            t0 = time.perf_counter()
            other_res.get(made)
            catch_up.append(time.perf_counter() - t0)
    out = {"read": _figures(reads), "write": _figures(writes)}
    if catch_up:
        out["read_after_other_wrote"] = _figures(catch_up)
    return out


def _compaction(url: str, folder: Path, prefix: str, writes: int) -> dict:
    """A log of ``writes`` entries: replayed by a new copy, compacted, loaded by another."""
    a = RedisVisitStore.from_url(folder / "log-a", url, prefix=prefix)
    _, _, res, ids = build(None, store=a)
    request = Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],))
    for _ in range(writes // 2):
        made = res.request("staff:op", request, NOW)
        res.cancel("staff:op", made, side="bureau", reason="family_request", now=NOW)
    entries = a.position()[0]
    stores = [a]
    try:
        t0 = time.perf_counter()
        stores.append(RedisVisitStore.from_url(folder / "log-b", url, prefix=prefix))
        stores[-1].catch_up()
        replay = time.perf_counter() - t0
        log_bytes = a.redis.memory_usage(a._log)
        t0 = time.perf_counter()
        position, trimmed = a.compact(every=1)
        compact = time.perf_counter() - t0
        t0 = time.perf_counter()
        stores.append(RedisVisitStore.from_url(folder / "log-c", url, prefix=prefix))
        stores[-1].catch_up()
        load = time.perf_counter() - t0
        assert stores[-1].position() == a.position()
        return {
            "entries": entries,
            "log_mb_in_redis": round(log_bytes / 1e6, 2),
            "replay_all_s": round(replay, 2),
            "compact_s": round(compact, 3),
            "copy_file_mb": round(a.path.stat().st_size / 1e6, 2),
            "snapshot_mb": round(a.redis.hstrlen(a._snapshot, "data") / 1e6, 3),
            "trimmed": trimmed,
            "log_left": a.redis.xlen(a._log),
            "start_from_snapshot_s": round(load, 3),
        }
    finally:
        for store in stores:
            store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--log", type=int, default=20_000, help="writes before the compaction")
    ap.add_argument("--redis", help="an existing Redis")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = VisitStore(folder / "file")
        print("file:", asyncio.run(_measure(store, args.n)))
        store.close()
        with contextlib.ExitStack() as stack:
            url = args.redis or stack.enter_context(_redis_server(folder))
            prefix = f"bench{time.time_ns()}:"
            a = RedisVisitStore.from_url(folder / "a", url, prefix=prefix)
            b = RedisVisitStore.from_url(folder / "b", url, prefix=prefix)
            print("redis copy:", asyncio.run(_measure(a, args.n, other=b)))
            a.close()
            b.close()
            print("compaction:", _compaction(url, folder, prefix + "log:", args.log))


if __name__ == "__main__":
    main()
