"""What the supervisor hands each worker (cluster/workers.py ``child_env``): the pages of each
worker may connect to every other worker and to the origins the operator named (the other
machines of the cluster); only worker 0 runs the demo and the live-visits clock."""

from __future__ import annotations

from cluster.workers import Supervisor, Worker
from server import Config


async def test_each_worker_may_connect_to_the_others_and_to_the_operators_origins(tmp_path):
    config = Config(data_dir=tmp_path, connect_origins=["https://node-2.example.org"])
    sup = Supervisor(config, 2, "ab" * 32)
    sup.redis_url = "redis://127.0.0.1:6390/0"
    sup.public_url = "https://node-1.example.org"
    sup.workers = [
        Worker(i, f"n-w{i}", 9001 + i, f"https://node-1.example.org:{9001 + i}") for i in (0, 1)
    ]
    envs = [sup.child_env(w) for w in sup.workers]
    assert envs[0]["PARLEY_CONNECT_ORIGINS"].split(",") == [
        "https://node-2.example.org",
        "https://node-1.example.org:9002",
    ]
    assert envs[1]["PARLEY_CONNECT_ORIGINS"].split(",") == [
        "https://node-2.example.org",
        "https://node-1.example.org:9001",
    ]
    assert [e["PARLEY_LIVE_VISITS"] for e in envs] == ["1", "0"]
    assert envs[1]["PARLEY_VISITS_URL"] == "https://node-1.example.org:9001"
    assert "PARLEY_VISITS_URL" not in envs[0]
