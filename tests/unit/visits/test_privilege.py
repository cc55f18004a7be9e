"""The lawyer's signed statement (R2, visits/privilege.py): built from a real privileged
session's ledger, signed with the deployment's seal key, verified offline by
``server.py verify``; any changed byte, a wrong root or a ledger that ever held a recorder or an
observer gives no VERIFIED."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from esign.pki import LocalPki
from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService
from visits import privilege
from visits.privilege import PrivilegeError, StatementSigner, build, canonical, verify_bytes

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0
ISSUED = dt.datetime(2027, 1, 15, 9, 30, tzinfo=dt.UTC)


class Visit:
    """A session of ``kind`` with both terminals, driven by hand through rooms."""

    def __init__(self, kind: str = "privileged") -> None:
        self.now = T0
        self.service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: self.now)
        guest = "lawyer" if kind == "privileged" else "visitor"
        self.state = self.service.create_session(
            kind,
            actor="system",
            title="Visit #7",
            case_number="V-7",
            participants=[
                ParticipantSpec("Bureau room", guest),
                ParticipantSpec("Inmate", "inmate"),
            ],
        )
        self.guest, self.inmate = list(self.state.participants)
        self.run("system", type="set_time_limit", seconds=1800)
        self.run(
            "system",
            type="mark_identity_checked",
            participant=self.guest,
            method="check_in",
            detail="律师 (lawyer, …0297, id_card, staff:op)",
        )

    def run(self, actor: str, **raw):
        self.now += 1
        return self.service.execute(self.state.id, actor, decode_command(raw))

    def live(self) -> None:
        for pid in (self.guest, self.inmate):
            self.run("system", type="connect", participant=pid)
        if self.state.policy.admission_consents.get("visitor"):
            self.run(self.guest, type="record_consent", topic="session_rules", given=True)
        if self.state.policy.recording == "required":
            self.run("system", type="report_recorder", status="ready")
            self.run("system", type="start_recording")
        for pid in (self.inmate, self.guest):
            self.run("system", type="admit", participant=pid)

    def events(self):
        return self.service.events(self.state.id)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> LocalPki:
    return LocalPki.open(tmp_path_factory.mktemp("pki"), b"a passphrase of the test")


def fingerprint(cert) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def ended_visit() -> Visit:
    v = Visit()
    v.live()
    v.run("system", type="disconnect", participant=v.inmate, reason="transport_lost")
    v.run("system", type="connect", participant=v.inmate)
    v.run("staff:chief", type="end_session", reason="terminated:security")
    return v


def test_the_statement_is_derived_from_the_ledger():
    v = ended_visit()
    s = build(v.events(), ISSUED)
    parties = {v.guest, v.inmate}
    assert s["session"] == v.state.id and s["kind"] == "privileged" and s["ended"]
    assert {p["id"]: p["role"] for p in s["participants"]} == {
        v.guest: "lawyer",
        v.inmate: "inmate",
    }
    assert s["ledger"] == {"seq": v.state.seq, "head": v.state.head, "events_checked": v.state.seq}
    assert s["checks"] == dict.fromkeys(privilege.CHECKS, 0)
    for name in ("plan_start", "plan_end"):
        edges = s[name]["edges"]
        # both ways, sound and picture, nobody else
        assert len(edges) == 4 and {e[0] for e in edges} == {e[1] for e in edges} == parties
        assert s[name]["sha256"] == hashlib.sha256(canonical(sorted(edges))).hexdigest()
    # start: the first event after which media flowed (the second admission)
    first = next(
        e.seq
        for e in v.events()
        if e.type == "participant.admitted" and e.data["participant"] == v.guest
    )
    assert s["plan_start"]["seq"] == first
    # end: the plan just before session.ended, one event before the head
    assert s["plan_end"]["seq"] == v.state.seq - 1


def test_an_open_visit_gets_a_statement_as_of_its_head():
    v = Visit()
    v.live()
    s = build(v.events(), ISSUED)
    assert not s["ended"] and s["plan_end"]["seq"] == v.state.seq == s["ledger"]["seq"]
    v.run("system", type="disconnect", participant=v.inmate, reason="transport_lost")
    later = build(v.events(), ISSUED)
    assert later["plan_end"]["edges"] == [] and later["ledger"]["head"] == v.state.head
    never = Visit()
    assert build(never.events(), ISSUED)["plan_start"] is None


def test_no_statement_for_a_family_visit_or_a_ledger_with_a_recorder_or_an_observer():
    family = Visit("visitation")
    family.live()
    with pytest.raises(PrivilegeError) as err:
        build(family.events(), ISSUED)
    assert err.value.code == "not_privileged"
    # a privileged ledger that somehow held an officer or a recording: nothing is signed
    v = Visit()
    v.live()
    events = v.events()
    for bad in (
        {
            "type": "participant.added",
            "data": {
                "participant": {"id": "p-0000beef", "name": "李", "role": "officer"},
                "space": "console",
            },
        },
        {"type": "recording.started", "data": {}},
    ):
        forged = forge(events, bad)
        with pytest.raises(PrivilegeError) as err:
            build(forged, ISSUED)
        assert err.value.code == "privilege_breach"


def forge(events, extra: dict):
    """The ledger with one more (well-chained) event appended, as a broken server might."""
    from rooms.events import EventDraft, seal

    last = events[-1]
    draft = EventDraft(last.ts + 1, "system", extra["type"], extra["data"])
    return [*events, seal(last.session, last.seq + 1, last.hash, draft)]


def test_signed_statement_verifies_offline_and_every_changed_byte_fails(pki, tmp_path):
    v = ended_visit()
    envelope = StatementSigner(pki).sign(build(v.events(), ISSUED), ISSUED)
    raw = privilege.file_bytes(envelope)
    root = fingerprint(pki.root)
    failed, lines = verify_bytes(raw, root)
    assert failed == 0, lines
    assert any(privilege.ASSERTION["zh"] in line for line in lines)
    # every 23rd byte across the file (the chain, the signature, the statement) and every byte
    # of the statement's ledger head; a sweep of every byte with two different bit flips each
    # (~3700 bytes) found none that still verified, but takes ~1.5 min, too long to run each time
    head = raw.index(v.state.head.encode())
    positions = sorted(set(range(0, len(raw) - 1, 23)) | set(range(head, head + 64)))
    for i in positions:  # the final newline is outside the JSON
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        assert verify_bytes(bytes(flipped), root)[0] > 0, f"byte {i} changed, still verified"


def test_wrong_root_and_an_inconsistent_statement_fail(pki, tmp_path):
    other = LocalPki.open(tmp_path / "other", b"another passphrase!!")
    v = ended_visit()
    statement = build(v.events(), ISSUED)
    good = StatementSigner(pki).sign(statement, ISSUED)
    assert verify_bytes(privilege.file_bytes(good), fingerprint(other.root))[0] > 0
    # signed by another deployment: its own root verifies it, ours does not
    foreign = StatementSigner(other).sign(statement, ISSUED)
    assert verify_bytes(privilege.file_bytes(foreign), fingerprint(other.root))[0] == 0
    assert verify_bytes(privilege.file_bytes(foreign), fingerprint(pki.root))[0] > 0
    # correctly signed, but claiming an edge to the recorder: the re-check catches it
    lying = json.loads(json.dumps(statement))
    lying["plan_end"]["edges"].append([v.guest, "recorder", "audio"])
    lying["plan_end"]["sha256"] = privilege.plan_digest(lying["plan_end"]["edges"])
    failed, lines = verify_bytes(
        privilege.file_bytes(StatementSigner(pki).sign(lying, ISSUED)), fingerprint(pki.root)
    )
    assert (
        failed == 1
        and "FAIL  plan_end: every edge is between the lawyer and the inmate" in "\n".join(lines)
    )
    # issued outside the seal certificate's life
    late = replace_issued(statement, ISSUED + dt.timedelta(days=3))
    assert (
        verify_bytes(
            privilege.file_bytes(StatementSigner(pki).sign(late, ISSUED)), fingerprint(pki.root)
        )[0]
        == 1
    )


def replace_issued(statement: dict, at: dt.datetime) -> dict:
    return {**statement, "issued_at": at.isoformat(timespec="seconds")}


def test_server_py_verify_cli(pki, tmp_path, capsys):
    import server

    v = ended_visit()
    path = tmp_path / "statement.json"
    path.write_bytes(
        privilege.file_bytes(StatementSigner(pki).sign(build(v.events(), ISSUED), ISSUED))
    )
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(pki.root.public_bytes(Encoding.PEM))

    def cli(*args):
        code = server.main(["verify", *map(str, args)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    # the real command line once (a fresh interpreter), then in-process
    done = subprocess.run(
        [sys.executable, "server.py", "verify", str(path), "--root", fingerprint(pki.root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "RESULT: VERIFIED" in done.stdout, done.stdout + done.stderr
    code, out = cli(path, "--root", fingerprint(pki.root))
    assert code == 0 and "RESULT: VERIFIED" in out and v.state.head in out, out
    assert cli(path, "--root", root_pem)[0] == 0
    text = path.read_text()
    path.write_text(
        text.replace(v.state.head, v.state.head[:-1] + ("0" if v.state.head[-1] != "0" else "1"))
    )
    code, out = cli(path, "--root", fingerprint(pki.root))
    assert code == 1 and "NOT VERIFIED" in out
    path.write_text(text)
    code, out = cli(path, "--root", "00" * 32)
    assert code == 1 and "FAIL  the chain ends at the root with the given fingerprint" in out
    assert cli(path, "--root", "not-a-root")[0] == 2
    assert cli(tmp_path / "missing.json", "--root", fingerprint(pki.root))[0] == 2


async def test_the_issuer_signs_once_per_ledger_head_and_its_codes_expire(pki):
    from signaling.visits_statement import CODE_TTL, Statements

    v = Visit()
    v.live()
    now = [T0 + 100]
    statements = Statements(v.service, clock=lambda: now[0])
    with pytest.raises(PrivilegeError) as err:  # no key given: nothing is signed
        await statements.issue(v.state.id)
    assert err.value.code == "unavailable"
    statements.pki = lambda: pki
    first = await statements.issue(v.state.id)
    assert await statements.issue(v.state.id) is first  # the same head: the cached file
    v.run("system", type="disconnect", participant=v.inmate, reason="transport_lost")
    second = await statements.issue(v.state.id)
    assert second["statement"]["ledger"]["seq"] == first["statement"]["ledger"]["seq"] + 1
    assert verify_bytes(privilege.file_bytes(second), fingerprint(pki.root))[0] == 0
    with pytest.raises(PrivilegeError) as err:
        await statements.issue("s-unknown")
    assert err.value.code == "not_found"
    code = statements.code_for(v.state.id)
    assert statements.code_for(v.state.id) == code and len(code) >= 22
    assert statements.session_of(code) == v.state.id and statements.session_of("x") is None
    now[0] += CODE_TTL + 1
    assert statements.session_of(code) is None and statements.code_for(v.state.id) != code
