"""Real daemons for the TURN and deployment tests: coturn (``turnserver``), nginx and
redis-server, each started on free ports with its own config file in a temporary directory and
stopped by its PID. Readiness is waited on (the port accepts), never slept for."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on ``host`` (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def wait_tcp(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not accepting within {timeout} s")


def self_signed(directory: Path, ips: list[str], name: str = "parley-test") -> tuple[Path, Path]:
    """A self-signed certificate for ``ips`` (SAN) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Daemon:
    """A foreground daemon process; ``stop()`` signals its PID (never a name)."""

    name = "daemon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / f"{self.name}.out"

    def _spawn(self, argv: list[str], netns: str | None = None) -> None:
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Coturn(Daemon):
    """``turnserver`` with the TURN REST shared secret (``use-auth-secret``), as deploy/ runs
    it. ``tls_port`` adds a TURN/TLS listener with a self-signed certificate."""

    name = "turnserver"

    def __init__(
        self,
        workdir: Path,
        secret: str,
        *,
        listen: str = "127.0.0.1",
        relay: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
        realm: str = "parley.test",
        base: Path | None = None,
    ) -> None:
        super().__init__(workdir)
        self.secret, self.listen, self.relay, self.tls, self.realm = (
            secret,
            listen,
            relay,
            tls,
            realm,
        )
        self.port = free_port(listen)
        self.tls_port = free_port(listen) if tls else None
        self.base = base  # a config to start from (deploy/coturn/turnserver.conf); ours follow

    def start(self, timeout: float = 20) -> Coturn:
        if not shutil.which("turnserver"):
            raise RuntimeError("turnserver missing: scripts/setup.sh --test installs coturn")
        lo = free_port(self.relay, socket.SOCK_DGRAM)
        # later lines win over the base config's for the same single-valued option
        lines = self.base.read_text().splitlines() if self.base else []
        lines += [
            f"listening-ip={self.listen}",
            f"listening-port={self.port}",
            f"relay-ip={self.relay}",
            *([] if self.base else [f"min-port={lo}", f"max-port={lo + 50}"]),
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-cli",
            "no-dtls",
            "no-multicast-peers",
            *([] if self.base else ["allow-loopback-peers"]),
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            "log-file=stdout",
            "simple-log",
            "verbose",
        ]
        if self.tls:
            lines += [
                f"tls-listening-port={self.tls_port}",
                f"cert={self.tls[0]}",
                f"pkey={self.tls[1]}",
            ]
        else:
            lines.append("no-tls")
        conf = self.workdir / "turnserver.conf"
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)  # the shared secret
        self._spawn(["turnserver", "-c", str(conf)])
        try:
            wait_tcp(self.listen, self.port, timeout, self.proc)
            if self.tls_port:
                wait_tcp(self.listen, self.tls_port, timeout, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("turnserver did not start:\n" + self.output()[-3000:]) from None
        return self

    def url(self, transport: str = "udp") -> str:
        if transport == "tls":
            return f"turns:{self.listen}:{self.tls_port}?transport=tcp"
        return f"turn:{self.listen}:{self.port}?transport={transport}"


class Redis(Daemon):
    """redis-server with deploy/redis.conf (AOF, appendfsync always) on a free loopback port."""

    name = "redis"

    def start(self, timeout: float = 20) -> Redis:
        self.port = free_port()
        return self.launch(timeout)

    def launch(self, timeout: float = 20) -> Redis:
        """Run redis-server on ``self.port`` and ``self.workdir`` (again, after a kill)."""
        self._spawn(
            [
                "redis-server",
                str(ROOT / "deploy" / "redis" / "redis.conf"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]
        )
        try:
            wait_tcp("127.0.0.1", self.port, timeout, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + self.output()[-3000:]) from None
        return self


def render_template(path: Path, values: dict[str, str]) -> str:
    """Substitute ``${NAME}`` like the nginx image's envsubst does (only the names given;
    nginx's own ``$variables`` stay)."""
    text = path.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


class Nginx(Daemon):
    """nginx in the foreground with deploy/nginx/parley.conf.template as its only site."""

    name = "nginx"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    def start(self, upstream: str, cert: Path, key: Path, timeout: float = 20) -> Nginx:
        site = render_template(
            ROOT / "deploy" / "nginx" / "parley.conf.template",
            {
                "PARLEY_UPSTREAM": upstream,
                "HTTPS_PORT": str(self.port),
                "SERVER_NAME": "localhost",
                "TLS_CERT": str(cert),
                "TLS_KEY": str(key),
                "HTTP_ACCESS_LOG": str(self.workdir / "access.log"),
            },
        )
        (self.workdir / "parley.conf").write_text(site)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / sub).mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            f"""{"user root;" if is_root() else ""}  # test only: workers reach the 0700 temp dirs
worker_processes 1;
pid {self.workdir / "nginx.pid"};
error_log {self.workdir / "error.log"} info;
events {{ worker_connections 512; }}
http {{
  access_log {self.workdir / "access.log"};
  client_body_temp_path {self.workdir / "client_body"};
  proxy_temp_path {self.workdir / "proxy"};
  fastcgi_temp_path {self.workdir / "fastcgi"};
  uwsgi_temp_path {self.workdir / "uwsgi"};
  scgi_temp_path {self.workdir / "scgi"};
  include /etc/nginx/mime.types;
  include {self.workdir / "parley.conf"};
}}
"""
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._spawn([nginx, "-c", str(conf), "-p", str(self.workdir), "-g", "daemon off;"])
        try:
            wait_tcp("127.0.0.1", self.port, timeout, self.proc)
        except Exception:
            self.stop()
            errors = (
                (self.workdir / "error.log").read_text(errors="replace")
                if (self.workdir / "error.log").exists()
                else ""
            )
            raise RuntimeError("nginx did not start:\n" + self.output() + errors) from None
        return self


def is_root() -> bool:
    return os.geteuid() == 0
