"""Run ``server.py serve`` as a real subprocess on a free port and read what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    # every server started, so a failing end-to-end test can show what they printed
    # (tests/e2e/conftest.py clears it before each test)
    started: list[ServerProcess] = []

    def __init__(self, data_dir: Path, *extra: str, env: dict | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.url = ""
        self.links: dict[str, list[str]] = {}

    def start(self, timeout: float = 30) -> ServerProcess:
        cmd = [
            sys.executable,
            str(ROOT / "server.py"),
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "text",
            *self.extra,
        ]
        ServerProcess.started.append(self)
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def pump():
            role = None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if m := re.match(r"LISTENING (\S+):(\d+)", line):
                    self.url = f"http://127.0.0.1:{m.group(2)}"
                if m := re.match(r"\s+(\w+)\s+\S", line):
                    role = m.group(1)
                if m := re.search(r"(https?://\S+/j/\S+)", line):
                    self.links.setdefault(role or "?", []).append(m.group(1))
                if getattr(self, "_ready_marker", "admits the parties") in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines[-40:]))
        return self

    def start_quiet(self, timeout: float = 30) -> ServerProcess:
        """Start a server that prints no demo links (``--no-demo``): ready once it listens."""
        self._ready_marker = "LISTENING"
        return self.start(timeout)

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if sig_kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        return "\n".join(self.lines)


STAFF_PASSWORD = "mediation-2026-pass"


def add_staff(
    data_dir: Path,
    username: str = "wang",
    name: str = "王调解员",
    role: str = "mediator",
    password: str = STAFF_PASSWORD,
    redis_url: str | None = None,
) -> None:
    """Create a staff account with the real CLI (``server.py user add``); with ``redis_url``,
    in a cluster's accounts (``--redis``)."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "server.py"),
            "user",
            "add",
            username,
            "--name",
            name,
            "--role",
            role,
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ]
        + (["--redis", redis_url] if redis_url else []),
        input=password + "\n",
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``server.py <args> --data-dir DATA`` as an operator runs it (no PARLEY_* settings from
    the test's environment), its output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args, "--data-dir", str(data_dir)],
        text=True,
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir)},
    )


def migrate_visits(data_dir: Path, redis_url: str) -> None:
    """Copy a data directory's visits database into a cluster's Redis with the real CLI
    (``server.py visits migrate``), as an operator moving a one-machine setup to a cluster."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "visits", "migrate"]
        + ["--data-dir", str(data_dir), "--redis", redis_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("copied "), done.stdout + done.stderr


def wait_until(predicate, timeout: float, interval: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def cluster_node(
    data_dir: Path, name: str, env: dict, made: list, *extra: str, port: int | None = None
) -> ServerProcess:
    """A clustered node ``name`` (its node id), started: on ``port`` (a free one if None) with
    that port's URL as its public URL, so that a redirect to it can be followed; ``env`` the
    cluster's (secret, Redis, lease TTL...). It is added to ``made`` before it starts, so a
    teardown stops it even when starting fails. Quiet (no demo links) when ``extra`` has
    ``--no-demo``: then ready once it listens."""
    port = port or free_port()
    public = f"http://127.0.0.1:{port}"
    proc = ServerProcess(
        data_dir,
        "--port",
        str(port),
        *extra,
        env={**env, "PARLEY_NODE_ID": name, "PARLEY_PUBLIC_URL": public},
    )
    made.append(proc)
    proc.start_quiet() if "--no-demo" in extra else proc.start()
    assert proc.url == public
    return proc
