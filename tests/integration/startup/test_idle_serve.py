"""The product path at rest: `server.py serve`, started as an operator starts it, imports no
e-signature or PDF stack (pyHanko, fontTools, the signing ceremony), no QR renderer and no
WebRTC stack (aiortc, PyAV) until a request or the first peer needs one — not at start, not
while answering the pages and probes every idle server answers.

`server.py` runs in a fresh interpreter (runpy, as `python server.py serve` runs it), with the
demo session it creates by default; a thread of that interpreter waits for the end of the start
(the demo's last line, after which SIGTERM is handled), requests
the join page, /verify, the staff login, /healthz and /metrics, then writes `sys.modules` and
VmRSS to a file and stops the server with SIGTERM, the way an operator does. The in-process
check of `create_app` alone is tests/unit/test_lazy_imports.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.test_lazy_imports import HEAVY

ROOT = Path(__file__).resolve().parents[3]
PATHS = ("/", "/verify", "/login", "/healthz", "/metrics")

DRIVER = """
import json, os, runpy, signal, sys, threading, time, urllib.error, urllib.request

port, out, data_dir, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
base = "http://127.0.0.1:" + port

demo_printed = threading.Event()  # the last line of the start; SIGTERM is handled from there

class Tee:
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        if "admits the parties" in text:
            demo_printed.set()
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)

sys.stdout = Tee(sys.stdout)

def watch():
    if not demo_printed.wait(60):
        os._exit(3)
    codes = {}
    for path in paths:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                codes[path] = r.status
        except urllib.error.HTTPError as exc:
            codes[path] = exc.code
        except OSError as exc:
            codes[path] = repr(exc)
    status = open("/proc/self/status").read()
    rss = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:"))
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "codes": codes, "rss_kib": rss}, f)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.argv = ["server.py", "serve", "--host", "127.0.0.1", "--port", port, "--data-dir", data_dir,
            "--log-format", "json"]
runpy.run_path("server.py", run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_idle_server_answering_its_pages_has_not_imported_the_signature_stack(tmp_path):
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER), str(free_port()), str(out)]
        + [str(tmp_path / "data"), ",".join(PATHS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.exists(), f"the server never became ready (exit {done.returncode}):\n{done.stderr}"
    seen = json.loads(out.read_text())
    # the pages were really served (a 404 or 500 would make the check below say nothing)
    assert seen["codes"] == dict.fromkeys(PATHS, 200), seen["codes"]
    heavy = sorted(m for m in seen["modules"] if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"imported at rest: {heavy}"
    # nor the WebRTC stack: aiortc, PyAV and aioice load with the first peer (docs/media.md)
    media = sorted(m for m in seen["modules"] if m.split(".")[0] in ("aiortc", "av", "aioice"))
    assert media == [], f"imported at rest: {media[:20]}"
    # nor cryptography's primitives (~10 MB): the recording cipher, the statement's signature and
    # a self-made TLS certificate load them when first used
    crypto = sorted(m for m in seen["modules"] if m.startswith("cryptography.hazmat"))
    assert crypto == [], f"imported at rest: {crypto[:20]}"
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"idle server.py serve: VmRSS {seen['rss_kib'] / 1024:.1f} MiB")
