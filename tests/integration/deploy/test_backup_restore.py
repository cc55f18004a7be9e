"""deploy/backup.py backs up a running node's data directory; restored, it is the same node:
the ledger's hash chains verify, the sessions come back, and an invitation link handed out
before the backup still opens (the token secret went to the separate keys directory and came
back with the restore)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys

import socketio

from signaling.namespace import NAMESPACE
from tests.support.procs import ROOT
from tests.support.server_proc import ServerProcess, add_staff


async def first_welcome(url: str, token: str) -> dict:
    sio = socketio.AsyncClient(reconnection=False)
    welcome = asyncio.get_running_loop().create_future()
    sio.on("welcome", lambda m: welcome.done() or welcome.set_result(m), namespace=NAMESPACE)
    await sio.connect(url, namespaces=[NAMESPACE], auth={"token": token}, transports=["websocket"])
    try:
        return await asyncio.wait_for(welcome, 15)
    finally:
        await sio.disconnect()


def session_of(link: str) -> str:
    payload = link.split("/j/")[1].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["session"]


def test_online_backup_then_restore_is_the_same_node(tmp_path):
    data, dest, keys, restored = (tmp_path / n for n in ("data", "backup", "keys", "restored"))
    add_staff(data)
    first = ServerProcess(data).start(timeout=60)
    try:
        link = first.links["mediator"][0]
        session = session_of(link)
        # while the node runs (its SQLite databases open, in WAL mode)
        out = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "backup.py"), str(data), str(dest)]
            + ["--keys", str(keys)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        first.stop()
    target = ROOT / out.stdout.strip()
    manifest = json.loads((target / "MANIFEST.json").read_text())
    assert "data/ledger.sqlite3" in manifest and "data/accounts.sqlite3" in manifest
    assert "keys/secret.key" in manifest and "data/secret.key" not in manifest
    assert not any(name.endswith(("-wal", "-shm")) for name in manifest)
    assert all(p.stat().st_mode & 0o077 == 0 for p in target.rglob("*") if p.is_file())

    # restore: the data, then the keys, into an empty directory
    shutil.copytree(target, restored)
    (restored / "MANIFEST.json").unlink()
    [key_set] = list(keys.iterdir())
    shutil.copytree(key_set, restored, dirs_exist_ok=True)

    verify = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "ledger", "verify", session]
        + ["--data-dir", str(restored)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    second = ServerProcess(restored).start(timeout=60)
    try:
        assert session_of(second.links["mediator"][0]) == session  # the same session came back
        token = link.split("/j/")[1]  # a link handed out before the backup
        welcome = asyncio.run(first_welcome(second.url, token))
        assert welcome["session"]["session"]["id"] == session
    finally:
        second.stop()
