"""Janus (Debian's `janus` package, 1.1.2) as the bench's baseline server.

    server = JanusServer(host="192.0.2.2")
    server.start()          # temp config dir, `janus` subprocess, waits for /janus/info
    server.stats()          # packets sent and PeerConnections up, from the Admin API
    server.stop()           # SIGTERM by PID, then SIGKILL if it hangs

The configuration is written from scratch into a temporary directory so that Janus loads only
what the comparison needs: the VideoRoom plugin and the HTTP transport (Janus API on
127.0.0.1:<port>/janus, Admin API on 127.0.0.1:<admin port>/admin), no event handlers, no
external loggers, warnings-only logging, no IPv6, and ICE candidates only on `host` (the
plugin and transport folders are temp folders holding one symlink each). The measured process
is the `janus` process itself (all its threads).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

JANUS_BIN = "/usr/bin/janus"
JANUS_LIB = "/usr/lib/x86_64-linux-gnu/janus"
PLUGIN = "libjanus_videoroom.so"
TRANSPORT = "libjanus_http.so"


def janus_available() -> bool:
    return os.access(JANUS_BIN, os.X_OK) and os.path.exists(f"{JANUS_LIB}/plugins/{PLUGIN}")


def _jcfg(sections: dict[str, dict]) -> str:
    """Janus's libconfig-style .jcfg text for {section: {key: value}} (str, bool, int)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return json.dumps(str(v))  # a double-quoted string with escapes

    out = []
    for name, items in sections.items():
        out.append(f"{name}: {{")
        out.extend(f"\t{k} = {value(v)}" for k, v in items.items())
        out.append("}")
    return "\n".join(out) + "\n"


def janus_configs(
    folder: str, *, host: str, port: int, admin_port: int, admin_secret: str, debug_level: int = 3
) -> dict[str, str]:
    """File name -> text of the three config files Janus needs for the bench (pure)."""
    core = {
        "general": {
            "configs_folder": folder,
            "plugins_folder": f"{folder}/plugins",
            "transports_folder": f"{folder}/transports",
            "events_folder": f"{folder}/events",
            "loggers_folder": f"{folder}/loggers",
            "debug_level": debug_level,
            "debug_timestamps": True,
            "debug_colors": False,
            "admin_secret": admin_secret,
            "server_name": "parley-bench",
            # the bench's clients long-poll and send keepalives, but a stalled orchestrator
            # must not lose the sessions in the middle of a window
            "session_timeout": 0,
        },
        "media": {"ipv6": False},
        "nat": {"ice_enforce_list": host, "nice_debug": False, "full_trickle": False},
        "events": {"broadcast": False},
    }
    http = {
        "general": {
            "json": "plain",
            "base_path": "/janus",
            "http": True,
            "port": port,
            "ip": "127.0.0.1",
            "https": False,
        },
        "admin": {
            "admin_base_path": "/admin",
            "admin_http": True,
            "admin_port": admin_port,
            "admin_ip": "127.0.0.1",
            "admin_https": False,
        },
    }
    # rooms are created over the API by the bench's publisher (bench/janus_client.py)
    videoroom = {"general": {}}
    return {
        "janus.jcfg": _jcfg(core),
        "janus.transport.http.jcfg": _jcfg(http),
        "janus.plugin.videoroom.jcfg": _jcfg(videoroom),
    }


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started Janus dies, so a
    killed bench leaves no Janus behind (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JanusServer:
    """One `janus` process with the bench's configuration; stopped by its PID only."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = _free_port()
        self.admin_port = _free_port()
        self.admin_secret = secrets.token_hex(8)
        self.folder = tempfile.mkdtemp(prefix="parley-janus-")
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}/admin"
        self.log_path = f"{self.folder}/janus.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def write_config(self) -> None:
        for sub, lib in (("plugins", PLUGIN), ("transports", TRANSPORT)):
            os.makedirs(f"{self.folder}/{sub}", exist_ok=True)
            os.symlink(f"{JANUS_LIB}/{sub}/{lib}", f"{self.folder}/{sub}/{lib}")
        for sub in ("events", "loggers"):
            os.makedirs(f"{self.folder}/{sub}", exist_ok=True)
        files = janus_configs(
            self.folder,
            host=self.host,
            port=self.port,
            admin_port=self.admin_port,
            admin_secret=self.admin_secret,
        )
        for name, text in files.items():
            with open(f"{self.folder}/{name}", "w") as f:
                f.write(text)

    def start(self, within: float = 20.0) -> None:
        if not janus_available():
            raise RuntimeError(
                f"{JANUS_BIN} or its VideoRoom plugin is missing (apt install janus)"
            )
        self.write_config()
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [JANUS_BIN, "-F", self.folder, "-C", f"{self.folder}/janus.jcfg", "-o"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:  # bounded: Janus answers /info once it is up
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                info = self._get(self.url + "/info")
                self.version = info.get("version_string")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise TimeoutError(f"janus not answering within {within} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path) as f:
                return " / ".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def _get(self, url: str, within: float = 5.0) -> dict:
        with urllib.request.urlopen(url, timeout=within) as r:
            return json.loads(r.read())

    def admin(self, path: str = "", **body) -> dict:
        """One Admin API request (POST), the secret and a transaction added."""
        body |= {"transaction": secrets.token_hex(6), "admin_secret": self.admin_secret}
        req = urllib.request.Request(
            self.admin_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            reply = json.loads(r.read())
        if reply.get("janus") != "success":
            raise RuntimeError(f"janus admin {body.get('janus')}: {reply.get('error')}")
        return reply

    def handles(self) -> list[dict]:
        """handle_info of every handle of every session."""
        out = []
        for session in self.admin(janus="list_sessions").get("sessions", []):
            listed = self.admin(f"/{session}", janus="list_handles").get("handles", [])
            for handle in listed:
                try:
                    out.append(self.admin(f"/{session}/{handle}", janus="handle_info")["info"])
                except RuntimeError:  # gone meanwhile
                    continue
        return out

    def stats(self) -> dict:
        """What Janus itself counted, summed over every handle (Admin API `handle_info`).

        `packets_sent`: RTP packets Janus sent (`webrtc.media.<mid>.stats.out.packets`; on a
        subscriber's handle, the forwarded video). `peers_connected`: handles whose
        PeerConnection is up (`flags.ready`). `nacks_out`: the out-direction NACK counter.
        """
        packets = bytes_ = up = nacks = 0
        for info in self.handles():
            if info.get("flags", {}).get("ready"):
                up += 1
            for media in (info.get("webrtc") or {}).get("media", {}).values():
                out = (media.get("stats") or {}).get("out") or {}
                packets += int(out.get("packets", 0))
                bytes_ += int(out.get("bytes", 0))
                nacks += int(out.get("nacks", 0))
        return {
            "packets_sent": packets,
            "bytes_sent": bytes_,
            "peers_connected": up,
            "nacks_out": nacks,
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)
