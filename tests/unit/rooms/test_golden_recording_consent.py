"""Golden decisions for the recording question and consent (R8, R15): a fixed mediation whose
ledger, with participant and session ids replaced by names, is pinned in
``tests/golden/recording-consent.jsonl``: the mediator's own consent, the question, a party's
"no" and "yes" (each naming the question), the start, a withdrawal (the pause), the consent
again (the resume and the gap's length), a second withdrawal ended by the stop.

It pins what rooms *decides* (event types, actors, data, times), where
``test_golden_ledger.py`` pins how events are encoded and hashed. It was written once from the
code of its commit, read line by line, and must not be regenerated to make this test pass: a
difference means the ledger of a recorded session now says something else."""

from __future__ import annotations

from pathlib import Path

import msgspec

from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.service import ParticipantSpec, SessionService

FIXTURE = Path(__file__).resolve().parents[2] / "golden" / "recording-consent.jsonl"


def _script() -> list[dict]:
    now = [1_767_225_600.0]
    store = SqliteLedgerStore(":memory:")
    service = SessionService(store, clock=lambda: now[0])
    state = service.create_session(
        "mediation",
        actor="staff:clerk",
        title="Rent",
        case_number="G-1",
        participants=[
            ParticipantSpec("Med", "mediator"),
            ParticipantSpec("A", "party", "A"),
            ParticipantSpec("B", "party", "B"),
        ],
    )
    ids = {p.name: p.id for p in state.participants.values()}

    def run(actor: str, **raw) -> None:
        now[0] += 1.5
        service.execute(state.id, ids.get(actor, actor), decode_command(raw))

    for name in ("Med", "A", "B"):
        run("system", type="connect", participant=ids[name])
    for name in ("A", "B"):
        for topic in ("online_mediation", "session_rules"):
            run(name, type="record_consent", topic=topic, given=True)
        run("Med", type="admit", participant=ids[name])
    run("Med", type="record_consent", topic="recording", given=True)
    run("Med", type="ask_recording", action="ask")
    run("A", type="record_consent", topic="recording", given=True)
    run("B", type="record_consent", topic="recording", given=False)
    run("Med", type="ask_recording", action="cancel")
    run("Med", type="ask_recording", action="ask")
    run("B", type="record_consent", topic="recording", given=True)
    run("Med", type="start_recording")
    run("A", type="record_consent", topic="recording", given=False)
    run("A", type="record_consent", topic="recording", given=True)
    run("B", type="record_consent", topic="recording", given=False)
    run("Med", type="stop_recording")
    events = store.read(state.id)
    assert verify_chain(events) == []
    names = {v: k for k, v in ids.items()} | {state.id: "SESSION"}
    text = msgspec.json.encode([e.to_dict() for e in events]).decode()
    for raw, name in names.items():
        text = text.replace(raw, name)
    rows = msgspec.json.decode(text)
    return [{k: r[k] for k in ("seq", "ts", "actor", "type", "data")} for r in rows]


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(msgspec.json.encode(r, order="sorted") + b"\n" for r in rows)


def test_the_recording_consent_ledger_is_the_pinned_one():
    got = _jsonl(_script())
    want = FIXTURE.read_bytes()
    assert got.splitlines() == want.splitlines()
    assert got == want
