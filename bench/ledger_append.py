"""Cost of one ledger append, SQLite against Redis Streams (docs/benchmarks.md).

    python -m bench.ledger_append [--n 2000] [--redis URL]

Appends ``n`` one-event commands (a ``chat.message``-sized event) to one session, one after the
other, as ``SessionService.execute`` does, and prints p50/p99/max of the call and appends/s for:
SQLite ``sync="full"`` (fsync in the call), SQLite ``sync="group"`` (the server's mode; the
call only commits to the WAL, plus a durability barrier measured separately), and Redis with
``appendfsync always`` (the reply comes after Redis's fsync): ``sync="full"`` (the call waits
for the reply) and ``sync="group"`` (the server's mode: the call queues, the barrier waits). Without ``--redis`` a
redis-server is started on a free port with deploy/redis/redis.conf in a temporary directory
and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cluster.ledger import RedisLedgerStore
from rooms.events import EventDraft
from rooms.ledger import SqliteLedgerStore

ROOT = Path(__file__).resolve().parents[1]


def _draft(i: int) -> EventDraft:
    return EventDraft(
        time.time(),
        "p-1a2b3c4d",
        "chat.message",
        {"space": "joint", "text": "好的，我同意。" * 8, "i": i},
    )


def _measure(store, n: int, barrier: bool = False) -> dict:
    times = []
    barriers = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        store.append("s-bench", [_draft(i)], expected_seq=i)
        times.append(time.perf_counter() - t0)
        if barrier:
            t1 = time.perf_counter()
            asyncio.run(store.durable())
            barriers.append(time.perf_counter() - t1)
    total = time.perf_counter() - start
    times.sort()
    out = {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 3),
        "max_ms": round(times[-1] * 1000, 3),
        "appends_per_s": round(n / total),
    }
    if barriers:
        barriers.sort()
        out["barrier_p50_ms"] = round(statistics.median(barriers) * 1000, 3)
        out["barrier_p99_ms"] = round(barriers[int(len(barriers) * 0.99) - 1] * 1000, 3)
    return out


@contextlib.contextmanager
def _redis_server(folder: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = str(ROOT / "deploy" / "redis" / "redis.conf")
    proc = subprocess.Popen(
        ["redis-server", conf, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--redis", help="an existing Redis (its appendfsync is reported)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for mode in ("full", "group"):
            store = SqliteLedgerStore(folder / f"{mode}.sqlite3", sync=mode)
            print(f"sqlite sync={mode}:", _measure(store, args.n, barrier=mode == "group"))
            store.close()
        with contextlib.ExitStack() as stack:
            url = args.redis or stack.enter_context(_redis_server(folder))
            store = RedisLedgerStore.from_url(url, prefix=f"bench{time.time_ns()}:")
            print(f"redis sync=full fsync_always={store.fsync_always}:", _measure(store, args.n))
            store.close()
            store = RedisLedgerStore.from_url(url, prefix=f"bench{time.time_ns()}:", sync="group")
            print("redis sync=group:", _measure(store, args.n, barrier=True))
            store.close()


if __name__ == "__main__":
    main()
