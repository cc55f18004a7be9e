"""The lawyer's signed statement that a privileged visit had no recorder and no observer (R2).

Why a statement: R2 holds by construction (rooms' privileged policy, plan and rules), but the
lawyer cannot see the server. The statement turns the session's own hash-chained ledger into a
claim the lawyer can take away and check offline, without trusting the terminal that showed it.

What is claimed, all derived from the ledger (never typed in):

- the session's id and kind (``privileged``) and every participant it ever held, by id and role
  (no names: the file is the lawyer's, the session id identifies the visit);
- ``plan_start``: the media plan (``rooms.plan.plan``) after the first event that made it
  non-empty — media started to flow; ``plan_end``: the plan folded up to the last event before
  ``session.ended`` (or up to the ledger head while the visit is open). Each is its edges
  ``[publisher id, subscriber id, kind]`` sorted, and ``sha256`` = SHA-256 of the canonical
  JSON of that sorted list (``canonical`` below);
- the ledger head: its ``seq`` and ``hash`` (the chain's last event hash, rooms/events.py);
- ``checks``: the plan recomputed after **every** event of the ledger: how many edges went to the
  recorder, how many to or from anyone but the lawyer and the inmate, how many participants ever
  had another role, how many recording events exist. A statement is issued only when all are 0
  (otherwise ``PrivilegeError``: fail closed, nothing is signed).

The signature: the statement's canonical JSON (keys sorted, no spaces, UTF-8, integers and
strings only, so every encoder agrees) is signed with ECDSA P-256/SHA-256 by the organisation's
seal key — the key that seals mediation agreements (esign/pki.py) — and the file carries the
certificate chain (seal certificate, signer CA, root) in DER/base64. That is the simplest sound
form with the ``cryptography`` library alone: a detached signature over bytes both sides can
recompute, with the chain inside, trusted through the root's SHA-256 the verifier gives, exactly
as ``server.py verify`` trusts an agreement's root. Not CMS (no ASN.1 library needed to read it)
and not a JWS (a JSON file a person can read). No timestamp token: ``issued_at`` is the server's
own clock, and the one-day seal certificate must be valid then.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rooms.events import Event
from rooms.plan import RECORDER, plan
from rooms.state import SessionState

TYPE = "parley.privileged-visit-statement"
VERSION = 1
PARTIES = ("lawyer", "inmate")
RECORDING_EVENTS = ("recording.started", "recording.ready", "recording.segment")
ASSERTION = {
    "zh": "本次律师会见全程未连接任何录音录像设备，也没有任何监听或旁观者。",
    "en": "No recorder and no observer was attached to this lawyer visit at any time.",
}
CHECKS = ("recorder_edges", "outside_edges", "other_participants", "recording_events")

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
# cryptography (~10 MB resident) is imported by the functions that sign or check, so a server
# that issues no statement does not hold it


class PrivilegeError(Exception):
    """The ledger does not support the statement (or a file fails a check): nothing signed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def canonical(value) -> bytes:
    """The exact bytes that are hashed and signed: sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plan_digest(edges: Iterable[Iterable[str]]) -> str:
    return hashlib.sha256(canonical(sorted(list(e) for e in edges))).hexdigest()


def _plan_record(seq: int, edges) -> dict:
    rows = sorted([e.publisher, e.subscriber, e.kind] for e in edges)
    return {"seq": seq, "edges": rows, "sha256": plan_digest(rows)}


def build(events: list[Event], issued_at: dt.datetime) -> dict:
    """The statement of one session's ledger (pure). Raises ``PrivilegeError`` when the session
    is not privileged or the ledger shows a recorder, an observer or a recording at any point."""
    if not events:
        raise PrivilegeError("not_found", "no such session")
    state = SessionState(id=events[0].session)
    counts = dict.fromkeys(CHECKS, 0)
    roles: dict[str, str] = {}
    start = end = None
    for event in events:
        if event.type == "session.ended":
            end = end or _plan_record(state.seq, plan(state))
        state.apply(event)
        if event.type in RECORDING_EVENTS:
            counts["recording_events"] += 1
        for p in state.participants.values():
            if p.id not in roles:
                roles[p.id] = p.role
                counts["other_participants"] += p.role not in PARTIES
        edges = plan(state)
        for e in edges:
            counts["recorder_edges"] += e.subscriber == RECORDER
            counts["outside_edges"] += not (
                roles.get(e.publisher) in PARTIES and roles.get(e.subscriber) in PARTIES
            )
        if start is None and edges:
            start = _plan_record(state.seq, edges)
    if state.kind != "privileged" or state.policy is None or not state.policy.privileged:
        raise PrivilegeError("not_privileged", "only a privileged visit has this statement")
    bad = {k: v for k, v in counts.items() if v}
    if bad:  # by construction this cannot happen; if it ever does, no statement is signed
        raise PrivilegeError("privilege_breach", f"the ledger shows {bad}")
    if not state.ended:
        end = _plan_record(state.seq, plan(state))
    return {
        "type": TYPE,
        "version": VERSION,
        "session": state.id,
        "kind": state.kind,
        "case_number": state.case_number or "",
        "participants": [{"id": pid, "role": role} for pid, role in sorted(roles.items())],
        "plan_start": start,
        "plan_end": end,
        "ledger": {"seq": state.seq, "head": state.head, "events_checked": len(events)},
        "ended": state.ended,
        "ended_reason": state.ended_reason or "",
        "checks": counts,
        "assertion": dict(ASSERTION),
        "issued_at": issued_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
    }


# -- signing -----------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign(statement: dict, key: ec.EllipticCurvePrivateKey, chain: list[x509.Certificate]) -> dict:
    """The file the lawyer keeps: the statement, its signature and the chain (leaf first)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = serialization.Encoding.DER
    return {
        "statement": statement,
        "signature": {
            "alg": "ES256",
            "value": _b64(key.sign(canonical(statement), ec.ECDSA(hashes.SHA256()))),
            "chain": [_b64(c.public_bytes(der)) for c in chain],
        },
    }


class StatementSigner:
    """Signs with the PKI's seal key under a one-day seal certificate, renewed when it has less
    than an hour left (``pki``: an ``esign.pki.LocalPki``, opened by the caller)."""

    def __init__(self, pki) -> None:
        self.pki = pki
        self._cert: x509.Certificate | None = None

    def sign(self, statement: dict, now: dt.datetime) -> dict:
        if self._cert is None or self._cert.not_valid_after_utc - now < dt.timedelta(hours=1):
            self._cert = self.pki.issue_seal_certificate(now)
        chain = [self._cert, self.pki.signer_ca, self.pki.root]
        return sign(statement, self.pki.seal_key, chain)


# -- offline verification ----------------------------------------------------------------------
def _check_body(s: dict) -> list[tuple[bool, str]]:
    """The statement's own consistency, recomputed (a signed but inconsistent file fails)."""
    parties = {p["id"]: p["role"] for p in s["participants"]}
    out = [
        (s["type"] == TYPE and s["version"] == VERSION, "statement type and version"),
        (s["kind"] == "privileged", "the session is of kind privileged"),
        (all(r in PARTIES for r in parties.values()), "only the lawyer and the inmate took part"),
        (all(s["checks"].get(k) == 0 for k in CHECKS), "no recorder, observer or recording"),
    ]
    for name in ("plan_start", "plan_end"):
        p = s[name]
        if p is None:
            out.append((name == "plan_start", f"{name}: media never flowed"))
            continue
        out.append((plan_digest(p["edges"]) == p["sha256"], f"{name} digest matches its edges"))
        out.append(
            (
                all(e[1] != RECORDER and e[0] in parties and e[1] in parties for e in p["edges"]),
                f"{name}: every edge is between the lawyer and the inmate",
            )
        )
        out.append((0 < p["seq"] <= s["ledger"]["seq"], f"{name} lies within the ledger"))
    return out


def _chain_ok(chain: list[x509.Certificate], root_fp: str, at: dt.datetime) -> list:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    fp = hashlib.sha256(chain[-1].public_bytes(serialization.Encoding.DER)).hexdigest()
    out = [(fp == root_fp, "the chain ends at the root with the given fingerprint")]
    linked = True
    for cert, issuer in zip(chain, chain[1:] + chain[-1:], strict=True):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            linked = False
    out.append((linked, "each certificate is signed by the next, the root by itself"))
    cas = chain[1:]
    out.append(
        (
            all(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca for c in cas),
            "the issuers are certificate authorities",
        )
    )
    out.append(
        (
            all(c.not_valid_before_utc <= at <= c.not_valid_after_utc for c in chain),
            "every certificate was valid when the statement was issued",
        )
    )
    from esign.pki import is_seal_certificate  # the seal's policy: no party's certificate

    out.append((is_seal_certificate(chain[0]), "the signer is the organisation's seal"))
    return out


def check(envelope: dict, root_fp: str) -> list[tuple[bool, str]]:
    """Every check of one statement file, as (passed, what). Raises PrivilegeError when the file
    is not a statement at all."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        s, sig = envelope["statement"], envelope["signature"]
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in sig["chain"]]
        value = base64.b64decode(sig["value"], validate=True)
        at = dt.datetime.fromisoformat(s["issued_at"])
        if len(chain) < 2 or sig["alg"] != "ES256" or at.tzinfo is None:
            raise ValueError("a chain of at least two certificates, ES256, a zoned time")
        der = serialization.Encoding.DER
        encoded = [_b64(value), *(_b64(c.public_bytes(der)) for c in chain)]
        if encoded != [sig["value"], *sig["chain"]]:  # one encoding only: no silent variants
            raise ValueError("base64 not in its canonical form")
        try:
            chain[0].public_key().verify(value, canonical(s), ec.ECDSA(hashes.SHA256()))
            signed = True
        except InvalidSignature:
            signed = False
        signature = (signed, "the seal's signature covers the statement")
        return [signature, *_chain_ok(chain, root_fp, at), *_check_body(s)]
    except Exception as exc:  # noqa: BLE001 - hostile bytes: any parse failure is a failed check
        raise PrivilegeError("invalid", f"not a statement file: {exc!r}") from exc


def _root_fingerprint(text: str) -> str | None:
    """``--root``: the root's SHA-256 (as for agreements) or the path of its PEM file."""
    fp = text.lower().replace(":", "")
    if len(fp) == 64 and all(c in "0123456789abcdef" for c in fp):
        return fp
    path = Path(text)
    if path.is_file():
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(path.read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return None


def readable(s: dict) -> list[str]:
    """The statement in both languages, for the report and the terminal."""
    start, end = s["plan_start"], s["plan_end"]
    return [
        f"会见 Session {s['session']} ({s['case_number']}), 律师会见 kind {s['kind']}",
        f"账本 Ledger head #{s['ledger']['seq']} {s['ledger']['head']}",
        f"开始时媒体计划 Plan at start: {start['sha256'] if start else '—'}",
        f"结束时媒体计划 Plan at end: {end['sha256'] if end else '—'}",
        f"{s['assertion']['zh']} {s['assertion']['en']}",
        f"签发 Issued {s['issued_at']}",
    ]


def main(argv: list[str], out=None) -> int:
    """``server.py verify statement.json --root <sha256 | root.pem>``: 0 verified, 1 not, 2 the
    command itself was wrong (a missing file, a bad --root)."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="server.py verify", description="verify a privileged visit's statement offline"
    )
    parser.add_argument("path", help="the statement file (.json)")
    parser.add_argument("--root", required=True, help="SHA-256 of the root, or its PEM file")
    args = parser.parse_args(argv)
    root_fp = _root_fingerprint(args.root)
    if root_fp is None:
        sys.stderr.write("error: --root must be a SHA-256 fingerprint or a PEM file\n")
        return 2
    try:
        raw = Path(args.path).read_bytes()
    except OSError as exc:
        sys.stderr.write(f"error: cannot read {args.path}: {exc}\n")
        return 2
    out.write(f"Parley privileged visit statement: {args.path}\n")
    failed, lines = verify_bytes(raw, root_fp)
    for line in lines:
        out.write(line + "\n")
    out.write("RESULT: VERIFIED\n" if failed == 0 else f"RESULT: NOT VERIFIED ({failed} failed)\n")
    return 0 if failed == 0 else 1


def verify_bytes(raw: bytes, root_fp: str) -> tuple[int, list[str]]:
    """(number of failed checks, the report's lines) for a statement file's bytes."""
    try:
        envelope = json.loads(raw)
        results = check(envelope, root_fp)
    except (ValueError, PrivilegeError) as exc:  # a flipped byte can break the JSON itself
        return 1, [f"  FAIL  the file is a readable statement ({exc})"]
    lines = [f"  {'ok  ' if ok else 'FAIL'}  {what}" for ok, what in results]
    failed = sum(not ok for ok, _ in results)
    if failed == 0:
        lines += [f"  {line}" for line in readable(envelope["statement"])]
    return failed, lines


def file_bytes(envelope: dict) -> bytes:
    """The statement file as it is downloaded: the envelope's canonical JSON and a newline."""
    return canonical(envelope) + b"\n"
