"""The server runs on uvloop by default, on asyncio's loop on request, and refuses anything else."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.support.server_proc import ROOT, ServerProcess


@pytest.mark.parametrize(
    "chosen, env", [("uvloop", {}), ("asyncio", {"PARLEY_EVENT_LOOP": "asyncio"})]
)
def test_the_server_serves_on_the_chosen_event_loop(tmp_path, chosen, env):
    server = ServerProcess(tmp_path / "data", "--no-demo", "--log-format", "json", env=env)
    server.start_quiet()
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        logged = [json.loads(line) for line in server.lines if line.startswith("{")]
        listening = next(entry for entry in logged if entry.get("msg") == "listening")
        assert listening["event_loop"] == chosen  # the loop actually running, not the setting
    finally:
        server.stop()


def test_an_unknown_event_loop_is_refused_with_a_clear_code(tmp_path):
    env = {"PARLEY_EVENT_LOOP": "trio", "PATH": "/usr/bin:/bin"}
    cmd = [
        sys.executable,
        str(ROOT / "server.py"),
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        "0",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "bad_config: event_loop" in done.stderr
