"""SIGKILL a process in the middle of a mediation; everything it acknowledged is still there.

The child runs a real ``SessionService`` on a real SQLite ledger file and prints one line per
acknowledged command (seq, hash, everyone's space). The parent kills it with SIGKILL at a random
moment, then checks the ledger chain, that every acknowledged event is present unchanged, and
that a fresh service rebuilds the session with everyone in the space they were in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.service import SessionService
from rooms.state import SessionState

ROOT = Path(__file__).resolve().parents[3]

CHILD = r"""
import json, sys
from rooms.commands import decode_command as d
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService

svc = SessionService(SqliteLedgerStore(sys.argv[1]))
st = svc.create_session("mediation", actor="staff:m", title="t", case_number=None, participants=[
    ParticipantSpec("m", "mediator"), ParticipantSpec("a", "party", "A"),
    ParticipantSpec("b", "party", "B")])
m, a, b = list(st.participants)

def run(actor, **raw):
    events = svc.execute(st.id, actor, d(raw))
    spaces = {p.id: p.space for p in st.participants.values()}
    print(json.dumps({"session": st.id, "seq": st.seq, "hash": st.head, "spaces": spaces}),
          flush=True)

for pid in (m, a, b):
    run("system", type="connect", participant=pid)
for pid in (a, b):
    run(pid, type="record_consent", topic="online_mediation", given=True)
    run(pid, type="record_consent", topic="session_rules", given=True)
    run(m, type="admit", participant=pid)
run(m, type="create_caucus", caucus="ca")
i = 0
while True:
    i += 1
    run(m, type="move_to_caucus", caucus="ca", side="A")
    run(a, type="chat", text=f"message {i}")
    run(m, type="visit_caucus", caucus="ca")
    run(m, type="return_to_joint")
    run(m, type="close_caucus", caucus="ca")
    run(m, type="create_caucus", caucus="ca")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [25, 61, 97])
def test_sigkill_loses_nothing_acknowledged(tmp_path, kill_after):
    db = tmp_path / "ledger.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    acks: list[dict] = []
    reader = threading.Thread(target=lambda: acks.extend(json.loads(x) for x in child.stdout))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(acks) < kill_after and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.005)
        assert len(acks) >= kill_after, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        reader.join(timeout=10)
        child.stdout.close()
        child.stderr.close()
    last = acks[-1]
    store = SqliteLedgerStore(db)
    events = store.read(last["session"])
    assert verify_chain(events) == []
    assert len(events) >= last["seq"]  # a commit may land just before the kill, unacknowledged
    by_seq = {e.seq: e.hash for e in events}
    assert all(by_seq[ack["seq"]] == ack["hash"] for ack in acks)
    acked = SessionState.from_events(events[: last["seq"]])
    assert {p.id: p.space for p in acked.participants.values()} == last["spaces"]

    service = SessionService(store)
    assert service.recover() == 1
    state = service.state(last["session"])
    assert not any(p.connected for p in state.participants.values())
    final = SessionState.from_events(events)
    assert {p.id: p.space for p in state.participants.values()} == {
        p.id: p.space for p in final.participants.values()
    }
    assert verify_chain(store.read(last["session"])) == []
    store.close()
