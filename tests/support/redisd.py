"""A real redis-server for the tests that need one (the Redis ledger, the node registry):
started once per test session on a free loopback port with deploy/redis/redis.conf (AOF,
appendfsync always) in a temporary directory, stopped by its PID, restartable on the same
port and directory (the AOF brings the data back). Never the machine's own Redis.

Each test gets its own key prefix (``redis_prefix``), so tests share the server without
seeing each other's keys. Use: ``from tests.support.redisd import redis_server, redis_prefix``
in a test module (pytest finds fixtures imported into it)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path

import pytest
import redis

from tests.support.procs import Redis


class RestartableRedis(Redis):
    """``Redis`` that can be stopped and started again on the same port and directory."""

    def start(self, timeout: float = 20) -> RestartableRedis:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server missing: scripts/setup.sh --test installs it")
        if getattr(self, "port", None) is None:
            return super().start(timeout)
        return self.launch(timeout)  # the same port and directory: the AOF brings the data back

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RestartableRedis:
    server = RestartableRedis(Path(tmp_path_factory.mktemp("redis")))
    server.port = None
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return f"t{secrets.token_hex(4)}:"


@contextlib.contextmanager
def own_database(server: RestartableRedis, number: int):
    """The URL of database ``number`` on the test server, empty when given and when done (for
    the tests whose real processes take a Redis URL, not a key prefix)."""
    url = server.url.rsplit("/", 1)[0] + f"/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def snapshot(url: str) -> dict:
    """Every key of the database at ``url`` with its value (DUMP): to see that nothing changed."""
    client = redis.Redis.from_url(url)
    try:
        return {k: client.dump(k) for k in sorted(client.keys("*"))}
    finally:
        client.close()
