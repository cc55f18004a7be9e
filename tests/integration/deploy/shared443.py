"""nginx with both deploy/nginx templates: the stream front on one port (ssl_preread routing by
SNI and ALPN, deploy/nginx/parley-443.stream.template) and the HTTPS server block behind it on a
loopback port with the PROXY protocol (deploy/nginx/parley.conf.template). A real nginx process
on free loopback ports, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.procs import ROOT, Daemon, free_port, is_root, render_template, wait_tcp

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/lib/nginx/modules")


def stream_module() -> str | None:
    """``load_module`` line needed for the stream module ("" when built in); None when this
    nginx has no stream module with ssl_preread at all."""
    if not Path(NGINX).exists():
        return None
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    if "--with-stream_ssl_preread_module" not in built:
        return None
    if "--with-stream=dynamic" not in built:
        return ""
    module = MODULES / "ngx_stream_module.so"
    return f"load_module {module};" if module.exists() else None


class SharedPortNginx(Daemon):
    name = "nginx"

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        super().__init__(workdir)
        self.host = host
        self.port = free_port(host)  # the one public port
        self.https_port = free_port()  # loopback, PROXY protocol
        self.hop_port = free_port()  # loopback, PROXY protocol, to coturn

    def start(
        self,
        upstream: str,
        turn_tls: str,
        turn_name: str,
        cert: Path,
        key: Path,
        timeout: float = 20,
    ) -> SharedPortNginx:
        load = stream_module()
        if load is None:
            raise RuntimeError("nginx has no stream module: scripts/setup.sh --test installs it")
        site = render_template(
            ROOT / "deploy" / "nginx" / "parley.conf.template",
            {
                "PARLEY_UPSTREAM": upstream,
                "HTTPS_PORT": f"127.0.0.1:{self.https_port} proxy_protocol",
                "SERVER_NAME": "localhost",
                "TLS_CERT": str(cert),
                "TLS_KEY": str(key),
                "HTTP_ACCESS_LOG": str(self.workdir / "access.log"),
            },
        )
        front = render_template(
            ROOT / "deploy" / "nginx" / "parley-443.stream.template",
            {
                "PUBLIC_LISTEN": f"{self.host}:{self.port}",
                "TURN_SERVER_NAME": turn_name,
                "HTTPS_UPSTREAM": f"127.0.0.1:{self.https_port}",
                "TURN_TLS_UPSTREAM": turn_tls,
                "TURN_HOP": f"127.0.0.1:{self.hop_port}",
                "STREAM_ACCESS_LOG": str(self.workdir / "stream.log"),
            },
        )
        (self.workdir / "parley.conf").write_text(site)
        (self.workdir / "parley-443.conf").write_text(front)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / sub).mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            f"""{load}
{"user root;" if is_root() else ""}
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
stream {{
  include {self.workdir / "parley-443.conf"};
}}
"""
        )
        self._spawn([NGINX, "-c", str(conf), "-p", str(self.workdir), "-g", "daemon off;"])
        try:
            for port in (self.port, self.https_port, self.hop_port):
                wait_tcp(self.host if port == self.port else "127.0.0.1", port, timeout, self.proc)
        except Exception:
            self.stop()
            log = self.workdir / "error.log"
            errors = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError("nginx did not start:\n" + self.output() + errors) from None
        return self

    def stream_log(self) -> list[str]:
        path = self.workdir / "stream.log"
        return path.read_text().splitlines() if path.exists() else []

    def access_log(self) -> list[str]:
        path = self.workdir / "access.log"
        return path.read_text().splitlines() if path.exists() else []
