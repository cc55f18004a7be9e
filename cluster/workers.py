"""``server.py serve --workers N``: N node processes on one machine behind one public port
(docs/scaling.md, "Workers: one node per core"; docs/decisions.md, decision 17).

One Parley process uses one core (one event loop carries the media). The supervisor here:

* prepares the data directory once, before any worker starts: the token secret, the
  e-signature passphrase and PKI, the recording master key, the self-signed certificate and
  the SQLite stores' schemas (files generated on first use would otherwise race);
* uses ``--redis`` or, without it, starts a local ``redis-server`` (``appendonly yes``,
  ``appendfsync always``, its files in ``<data dir>/redis``, a free loopback port) and restarts
  it if it dies;
* starts N children ``server.py serve`` on ``127.0.0.1``-free ports of their own (public port +
  1 + i, or free ports with ``--port 0``), each a clustered node (``PARLEY_NODE_ID`` =
  ``<node id>-w<i>``, the same secret and Redis, ``PARLEY_NODE_URL`` = its own URL: where pages
  are redirected); the demo session and the live-visits clock only on worker 0;
* restarts a child that exits unexpectedly, after 0.5 s doubling to 10 s while it keeps
  failing within 30 s of its start (logged each time);
* runs the front (cluster/front.py) on the public host:port: each connection is spliced to the
  client's previous worker, else to the least-loaded live one (heartbeats in Redis); a worker
  that does not serve a page's session redirects it to the one that does;
* on SIGTERM/SIGINT sends SIGTERM to every child (each drains, docs/scaling.md "Drain on
  SIGTERM"; a second signal is passed on too: hand over now), waits until they have exited,
  stops the front and its own redis-server, and exits 0.

Prints ``WORKER <node id> PID <pid> PORT <port>`` on every (re)start of a worker and
``LISTENING <host>:<port>`` (the front) once every worker listens; the children's own output
follows (worker 0's demo links).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from cluster.front import Front
from signaling.tls import lan_addresses

log = logging.getLogger("parley.workers")

ROOT = Path(__file__).resolve().parents[1]
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
HEALTHY_AFTER = 30.0  # a worker that ran this long starts its backoff again from the first step
START_FAILURES = 5  # a worker that fails this many times before it ever listened: give up
LOAD_POLL = 0.5  # seconds between two reads of the workers' heartbeats
AFFINITY_IDLE = 600.0  # a client's worker is remembered this long after its last connection
STOP_MARGIN = 15.0  # after PARLEY_DRAIN_SECONDS, how long a child may take before SIGKILL


@dataclasses.dataclass
class Worker:
    index: int
    node_id: str
    port: int
    url: str
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    started: float = 0.0
    failures: int = 0  # consecutive quick exits
    ever_ready: bool = False
    restarts: int = 0


def supervise(config, workers: int) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the process's exit code."""
    redis_url = config.redis_url
    if not redis_url and not shutil.which("redis-server"):
        print(
            f"bad_config: --workers {workers} needs Redis (the workers share the ledger and the "
            "session leases there): give --redis redis://host:port/db (or PARLEY_REDIS_URL), "
            "or install redis-server (on PATH) and Parley starts one in the data directory",
            file=sys.stderr,
        )
        return 2
    config.data_dir = Path(config.data_dir).resolve()
    try:
        secret = prepare_data_dir(config)
    except (OSError, ValueError) as exc:
        print(f"bad_config: data directory {config.data_dir}: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(config, workers, secret)
    try:
        return asyncio.run(supervisor.run())
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:  # the local redis-server did not start
        print(f"cannot start the workers: {exc}", file=sys.stderr)
        return 1


def prepare_data_dir(config) -> str:
    """Create the files generated on first use once, here, before any worker starts (two
    workers creating the same key at once would each keep a different one). Returns the token
    secret (hex) every worker is given."""
    from recording.keys import MasterKey
    from rooms.accounts import AccountStore
    from signaling.agreements import load_or_create_passphrase
    from signaling.tokens import load_or_create_secret

    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    secret = config.secret or load_or_create_secret(data / "secret.key").hex()
    bytes.fromhex(secret)  # ValueError: not hex
    passphrase = (
        config.esign_passphrase.encode()
        if config.esign_passphrase
        else load_or_create_passphrase(data / "esign-passphrase")
    )
    MasterKey.load(data, given=config.recording_key)
    if config.tls == "self-signed":
        from signaling.tls import ensure_self_signed

        ensure_self_signed(data, lan_addresses())
    from esign.pki import LocalPki

    base = (config.public_url or f"http://{config.host}:{config.port}") + "/esign"
    LocalPki.open(data, passphrase, config.organisation, base)  # created now if missing
    from desk.store import DeskStore
    from visits.store import VisitStore

    for store in (
        AccountStore(data / "accounts.sqlite3"),
        DeskStore(data),
        VisitStore(data),
    ):  # their schemas and migrations, once
        store.close()
    return secret


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return s.getsockname()[1]


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


class Supervisor:
    def __init__(self, config, count: int, secret: str) -> None:
        self.config = config
        self.count = count
        self.secret = secret
        self.workers: list[Worker] = []
        self.stopping = asyncio.Event()
        self.signals = 0
        self.redis_url = config.redis_url
        self.redis_proc: asyncio.subprocess.Process | None = None
        self.redis_port = 0
        self.loads: dict[str, object] = {}  # node id -> NodeInfo (last heartbeat read)
        self.pending: dict[str, int] = {}  # picks since the last read, per node id
        self.affinity: dict[str, tuple[int, float]] = {}  # client ip -> (worker, last used)
        self.front = Front(self.pick, self.unreachable)
        self.ready = asyncio.Event()
        self.listening = asyncio.Event()  # a worker printed its LISTENING line
        self.held: list[bytes] = []  # children's output held until the front listens
        self.failed: str | None = None
        self._tasks: list[asyncio.Task] = []

    # -- running ----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal)
        config = self.config
        front_sock = socket.socket(
            socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM
        )
        front_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            front_sock.bind((config.host, config.port))
        except OSError as exc:
            front_sock.close()
            print(f"cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
            return 1
        front_port = front_sock.getsockname()[1]
        scheme = "https" if config.tls != "off" else "http"
        shown = config.host
        if shown in ("0.0.0.0", "::"):
            shown = (lan_addresses() or ["127.0.0.1"])[0]
        public = config.public_url or f"{scheme}://{shown}:{front_port}"
        parts = urlsplit(public)
        node_host = parts.hostname or shown
        if ":" in node_host:
            node_host = f"[{node_host}]"
        base_id = config.node_id
        if not base_id:
            from cluster.node import node_id_for

            base_id = node_id_for(None, front_port)
        for i in range(self.count):
            port = config.port + 1 + i if config.port else free_port(config.host)
            url = f"{parts.scheme or scheme}://{node_host}:{port}"
            self.workers.append(Worker(i, f"{base_id}-w{i}", port, url))
        self.public_url = public
        try:
            if not self.redis_url:
                await self.start_redis()
            for w in self.workers:
                self._tasks.append(loop.create_task(self.keep(w)))
            self._tasks.append(loop.create_task(self.poll_loads()))
            waiting = loop.create_task(self.all_ready())
            stop = loop.create_task(self.stopping.wait())
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self.failed or self.stopping.is_set():
                waiting.cancel()
                front_sock.close()
                return await self.shutdown(1 if self.failed else 0)
            front_sock.listen(512)
            front_sock.setblocking(False)
            await self.front.start(config.host, front_port, sock=front_sock)
            log.info(
                "workers up",
                extra={"url": public, "workers": [(w.node_id, w.port) for w in self.workers]},
            )
            sys.stdout.write(f"LISTENING {config.host}:{front_port}\n")
            sys.stdout.flush()
            self.ready.set()
            for line in self.held:
                sys.stdout.buffer.write(line)
            self.held.clear()
            sys.stdout.flush()
            await self.stopping.wait()
            return await self.shutdown(1 if self.failed else 0)
        finally:
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def all_ready(self) -> None:
        while not all(w.ready for w in self.workers):
            self.listening.clear()
            await self.listening.wait()

    def on_signal(self) -> None:
        self.signals += 1
        self.stopping.set()
        if self.signals > 1:  # a second signal: the children hand their sessions over now
            for w in self.workers:
                self._signal(w, signal.SIGTERM)

    def _signal(self, w: Worker, sig: int) -> None:
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(sig)

    async def shutdown(self, code: int) -> int:
        """SIGTERM to every child (each drains), wait for them, then the front and Redis."""
        log.info("stopping workers", extra={"workers": [w.node_id for w in self.workers]})
        for w in self.workers:
            self._signal(w, signal.SIGTERM)
        bound = time.monotonic() + max(float(self.config.drain_seconds), 0.0) + STOP_MARGIN
        killed = []
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                await asyncio.wait_for(w.proc.wait(), max(bound - time.monotonic(), 0.1))
            except TimeoutError:
                log.error("worker did not stop: SIGKILL", extra={"node": w.node_id})
                self._signal(w, signal.SIGKILL)
                await w.proc.wait()
                killed.append(w.node_id)
        await self.front.close()
        await self.stop_redis()
        log.info("workers stopped", extra={"killed": killed})
        return 1 if killed else code

    # -- one worker ---------------------------------------------------------------------------
    def child_env(self, w: Worker) -> dict[str, str]:
        env = dict(os.environ)
        for field in dataclasses.fields(self.config):
            value = getattr(self.config, field.name)
            if value is None:
                env.pop(self.config.ENV_PREFIX + field.name.upper(), None)
                continue
            env[self.config.ENV_PREFIX + field.name.upper()] = _env_value(value)
        env.update(
            {
                "PARLEY_WORKERS": "1",
                "PARLEY_HOST": self.config.host,
                "PARLEY_PORT": str(w.port),
                "PARLEY_NODE_ID": w.node_id,
                "PARLEY_NODE_URL": w.url,
                "PARLEY_PUBLIC_URL": self.public_url,
                "PARLEY_REDIS_URL": self.redis_url,
                "PARLEY_SECRET": self.secret,
                "PARLEY_DEMO": "1" if (self.config.demo and w.index == 0) else "0",
                "PARLEY_LIVE_VISITS": "1" if (self.config.live_visits and w.index == 0) else "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        # a terminal's page (on worker 0) may open its socket on the worker that took its
        # visit over (web/static/kiosk.js): the pages' CSP lets them connect to every worker,
        # and to the origins the operator named (other machines' nodes of the cluster)
        others = [o.url for o in self.workers if o is not w]
        env["PARLEY_CONNECT_ORIGINS"] = ",".join([*(self.config.connect_origins or ()), *others])
        if w.index != 0:  # the live visits' pages are worker 0's (signaling/visits_home.py)
            env["PARLEY_VISITS_URL"] = self.workers[0].url
        else:
            env.pop("PARLEY_VISITS_URL", None)
        return env

    async def keep(self, w: Worker) -> None:
        """Run worker ``w`` until the supervisor stops; restart it when it exits."""
        delay = BACKOFF_FIRST
        while not self.stopping.is_set():
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "server.py"),
                "serve",
                env=self.child_env(w),
                cwd=str(ROOT),
                stdout=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C reaches the supervisor only
                preexec_fn=_die_with_parent,
            )
            w.started = time.monotonic()
            self._say(f"WORKER {w.node_id} PID {w.proc.pid} PORT {w.port}\n")
            log.info(
                "worker started",
                extra={"node": w.node_id, "pid": w.proc.pid, "port": w.port, "url": w.url},
            )
            await self.relay(w)
            code = await w.proc.wait()
            w.ready = False
            if self.stopping.is_set():
                log.info("worker stopped", extra={"node": w.node_id, "code": code})
                return
            ran = time.monotonic() - w.started
            if ran >= HEALTHY_AFTER:
                delay = BACKOFF_FIRST
            if not w.ever_ready:
                w.failures += 1
                if w.failures >= START_FAILURES:
                    self.failed = f"{w.node_id} exited {w.failures} times before listening"
                    log.error("worker never started: giving up", extra={"node": w.node_id})
                    self.stopping.set()
                    return
            w.restarts += 1
            log.warning(
                "worker exited (code %s after %.1f s): restarting in %.1f s",
                code,
                ran,
                delay,
                extra={"node": w.node_id, "code": code, "restart": w.restarts},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def relay(self, w: Worker) -> None:
        """The child's stdout: its LISTENING line marks it ready; the rest is passed on (held
        until the front listens, so that the front's LISTENING line comes first)."""
        assert w.proc is not None and w.proc.stdout is not None
        while line := await w.proc.stdout.readline():
            if line.startswith(b"LISTENING "):
                w.ready = w.ever_ready = True
                w.failures = 0
                self.listening.set()
                line = f"{w.node_id} ".encode() + line  # not the public port: not LISTENING
            if self.ready.is_set():
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            else:
                self.held.append(line)

    def _say(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    # -- the front's choice -------------------------------------------------------------------
    def pick(self, client: str, tried: set[int]) -> tuple[int, str, int] | None:
        """The client's previous worker while it is up and not draining, else the least
        loaded (its last heartbeat, plus the connections sent there since), else None."""
        from cluster.placement import place
        from cluster.registry import NodeInfo, NodeLoad

        up = [w for w in self.workers if w.ready and w.index not in tried]
        if not up:
            return None
        now = time.monotonic()
        infos = {}
        for w in up:
            info = self.loads.get(w.node_id)
            infos[w.node_id] = (
                info if isinstance(info, NodeInfo) else NodeInfo(w.node_id, w.url, NodeLoad())
            )
        sticky = self.affinity.get(client)
        chosen = None
        if sticky is not None:
            chosen = next((w for w in up if w.index == sticky[0]), None)
            if chosen is not None and infos[chosen.node_id].draining:
                chosen = None
        if chosen is None:
            best = place(infos.values(), self.pending)
            chosen = next((w for w in up if best is not None and w.node_id == best.id), up[0])
            self.pending[chosen.node_id] = self.pending.get(chosen.node_id, 0) + 1
        self.affinity[client] = (chosen.index, now)
        if len(self.affinity) > 10000:
            for ip, (_, used) in list(self.affinity.items()):
                if now - used > AFFINITY_IDLE:
                    del self.affinity[ip]
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        if host == "::":
            host = "::1"
        return chosen.index, host, chosen.port

    def unreachable(self, index: int) -> None:
        for ip, (worker, _) in list(self.affinity.items()):
            if worker == index:
                del self.affinity[ip]

    async def poll_loads(self) -> None:
        """The workers' heartbeats (load, draining) from Redis, every LOAD_POLL seconds."""
        import redis.asyncio as aioredis

        from cluster.registry import Registry

        registry = Registry(aioredis.Redis.from_url(self.redis_url), "front", "")
        try:
            while True:
                with contextlib.suppress(aioredis.RedisError, OSError):
                    live, _ = await registry.nodes()
                    self.loads = {n.id: n for n in live}
                    self.pending = {}
                await asyncio.sleep(LOAD_POLL)
        finally:
            with contextlib.suppress(Exception):
                await registry.close()

    # -- the local Redis ----------------------------------------------------------------------
    async def start_redis(self) -> None:
        directory = self.config.data_dir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.redis_port = free_port("127.0.0.1")
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self._tasks.append(asyncio.get_running_loop().create_task(self.keep_redis(directory)))
        deadline = time.monotonic() + 20
        while not await self._redis_answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {directory / 'redis.log'}")
            await asyncio.sleep(0.05)
        log.info("redis-server started", extra={"url": self.redis_url, "dir": str(directory)})

    async def keep_redis(self, directory: Path) -> None:
        delay = BACKOFF_FIRST
        while not self.stopping.is_set():
            self.redis_proc = await asyncio.create_subprocess_exec(
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--dir",
                str(directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(directory / "redis.log"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            self._say(f"REDIS PID {self.redis_proc.pid} PORT {self.redis_port}\n")
            started = time.monotonic()
            code = await self.redis_proc.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                delay = BACKOFF_FIRST
            log.error("redis-server exited (%s): restarting in %.1f s", code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _redis_answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 2)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def stop_redis(self) -> None:
        proc = self.redis_proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)  # redis-server writes and fsyncs its AOF, then exits
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux), so that a
    SIGKILLed supervisor leaves no orphaned worker holding the ports."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
