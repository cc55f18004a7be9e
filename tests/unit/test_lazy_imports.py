"""The server does not carry the e-signature and PDF stack (nor the QR renderer) until a request
needs it.

Importing pyHanko and fontTools costs ~28 MB of RSS and 1-3 s; a server that never signs must
not pay it. Checked in a fresh interpreter (this test process may have imported them already).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "pyhanko",
    "fontTools",
    "esign.ceremony",
    "esign.pdfsign",
    "esign.evidence",
    "esign.tsa",
    "esign.archive",
    "qrcode",  # the console's QR images (~4 MB): drawn on first request
)


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_server_and_creating_the_app_imports_no_signature_stack(tmp_path):
    out = run(
        f"""
        import sys
        import server
        app = server.create_app(server.Config(data_dir=__import__("pathlib").Path({str(tmp_path)!r})))
        heavy = {HEAVY!r}
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
        """
    )
    assert out.strip() == "[]"


def test_the_agreement_desk_loads_the_stack_on_first_use(tmp_path):
    out = run(
        f"""
        import asyncio, sys
        from pathlib import Path
        from signaling.agreements import AgreementDesk
        desk = AgreementDesk(None, Path({str(tmp_path)!r}), organisation="o", passphrase=b"p" * 16,
                             base_url="https://x")
        assert "pyhanko" not in sys.modules
        asyncio.run(desk.load())
        print("pyhanko" in sys.modules, "esign.ceremony" in sys.modules)
        """
    )
    assert out.split() == ["True", "True"]
