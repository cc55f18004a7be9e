"""The signing ceremony of one agreement, server side (design §8.4).

freeze -> (enrol each signer) -> prepare/finish turn by turn: applicants, respondents,
mediator -> seal. A decline stops the version; an edit makes version N+1 and discards
collected signatures. Every step either completes or changes nothing: the current PDF is
replaced only after a signature was verified, embedded and re-validated.

Each step returns the ledger events it wants recorded, as `{"type": ..., "data": {...}}`
dicts; the session layer appends them to its ledger. This module knows nothing of rooms.
The steps that change the PDF also come as ``stage_*``: they compute the new revision and
stage it on disk (``esign.pdfstore``) but change nothing until the caller, having appended
the events, calls ``Step.promote``; the plain methods stage and promote at once.

pyHanko's rendering, signing and validation are CPU-bound and run in a worker thread
(``_off_loop``), so the server's event loop keeps forwarding media during a step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps.api import TimeStamper

from esign import ltv, pdfsign, pdfstore
from esign.agreement import (
    Agreement,
    Supersedes,
    check_policy,
    fingerprint,
    parse_agreement,
    signer_role,
    signing_order,
)
from esign.document import SEAL_FIELD, attached_agreement_data, render_agreement_pdf
from esign.errors import EsignError
from esign.pki import LocalPki, cert_sha256, event_san, spki_sha256
from esign.policy import check_signer
from esign.protocol import (
    POP_PREFIX,
    DeclineRequest,
    EnrolChallenge,
    Enrolment,
    EnrolRequest,
    IdentityAttestation,
    Receipt,
    SignatureReply,
    SignatureRequest,
    b64d,
    b64e,
)

Event = dict
CHALLENGE_TTL = dt.timedelta(minutes=5)
PREPARE_TTL = dt.timedelta(minutes=5)
P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _event(kind: str, **data) -> Event:
    return {"type": kind, "data": data}


async def _off_loop(work: Callable[[], Any]) -> Any:
    """Run the coroutine function ``work`` in a worker thread, on that thread's own event
    loop. The timestamper is called there too: it must not be bound to the server's loop
    (the local authority and pyHanko's ``HTTPTimeStamper`` without a session are not)."""
    return await asyncio.to_thread(lambda: asyncio.run(work()))


@dataclasses.dataclass
class Step:
    """A computed step: its events, its new revision staged on disk (or none), its result.

    The caller appends ``events`` to the ledger and then calls ``promote`` with no await in
    between; if the ledger refuses them, ``discard``. Until ``promote`` the ceremony and the
    current PDF are unchanged."""

    events: list[Event]
    staged: Path | None
    path: Path | None
    apply: Callable[[], None]
    result: Any = None

    def promote(self) -> None:
        if self.staged is not None:
            pdfstore.promote(self.staged, self.path)
        self.apply()

    def discard(self) -> None:
        pdfstore.discard(self.staged)


def p1363_to_der(raw: bytes) -> bytes:
    """WebCrypto's 64-byte r||s as the DER ECDSA-Sig-Value that CMS needs (RFC 5753)."""
    if len(raw) != 64:
        raise EsignError("malformed_signature", "expected a 64-byte P-256 r||s signature")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        raise EsignError("malformed_signature", "r or s out of range")
    return encode_dss_signature(r, s)


@dataclasses.dataclass
class _Enrolled:
    cert: x509.Certificate
    attestation: IdentityAttestation


@dataclasses.dataclass
class _Pending:
    participant_id: str
    field_name: str
    prepared: pdfsign.PreparedSignature
    expires: dt.datetime
    ledger_head: str


def _promoted(step: Step) -> Step:
    step.promote()
    return step


class SignatureCeremony:
    """Owns the current PDF of one agreement (on disk in `store_dir`) and its signing state."""

    def __init__(
        self,
        pki: LocalPki,
        timestamper: TimeStamper,
        store_dir: str | os.PathLike,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.pki = pki
        self.timestamper = timestamper
        self.store_dir = Path(store_dir)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.agreement: Agreement | None = None
        self.status = "new"
        self.signed: list[str] = []
        self._pdf_sha256 = ""
        self._enrolled: dict[str, _Enrolled] = {}
        self._challenges: dict[str, tuple[bytes, dt.datetime]] = {}
        self._pending: dict[str, _Pending] = {}
        self._seal_cert: x509.Certificate | None = None
        self._used_certs: list[x509.Certificate] = []
        self._lock = asyncio.Lock()

    # --- document ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        assert self.agreement is not None
        return self._path_of(self.agreement)

    def _path_of(self, agreement: Agreement) -> Path:
        return self.store_dir / f"{agreement.case_no}-v{agreement.version}.pdf"

    @property
    def pdf(self) -> bytes:
        """The current revision (what every participant may download)."""
        return self.path.read_bytes()

    @property
    def order(self) -> list[tuple[str, str]]:
        assert self.agreement is not None
        return signing_order(self.agreement)

    def _seal_certificate(self) -> x509.Certificate:
        now = self.clock()
        if self._seal_cert is None or self._seal_cert.not_valid_after_utc - now < dt.timedelta(
            hours=1
        ):
            self._seal_cert = self.pki.issue_seal_certificate(now)
            self._used_certs.append(self._seal_cert)
        return self._seal_cert

    @classmethod
    async def resume(
        cls,
        pki: LocalPki,
        timestamper: TimeStamper,
        pdf_path: str | os.PathLike,
        clock: Callable[[], dt.datetime] | None = None,
        declined: bool = False,
    ) -> SignatureCeremony:
        """Rebuild a ceremony after a restart from its current PDF, the source of truth.

        Agreement, collected signatures and status come from the file (checked first);
        enrolments and open requests are not kept: signers enrol again (new key, new
        certificate) and keep what they signed. `declined` comes from the ledger.
        """
        path = Path(pdf_path)
        ceremony = cls(pki, timestamper, path.parent, clock)
        pdf = await asyncio.to_thread(path.read_bytes)
        reader = PdfFileReader(io.BytesIO(pdf))
        try:
            agreement = parse_agreement(attached_agreement_data(reader))
        except KeyError as exc:
            raise EsignError("document_modified", "no agreement data in the PDF") from exc
        ceremony.agreement = agreement
        if ceremony.path != path:
            raise EsignError("document_modified", f"{path.name} is not this agreement's file")
        fields = [str(s.field_name) for s in reader.embedded_regular_signatures]
        for sig in reader.embedded_signatures:
            ceremony._used_certs.append(x509.load_der_x509_certificate(sig.signer_cert.dump()))
        sealed = bool(fields) and fields[-1] == SEAL_FIELD
        ceremony.signed = fields[1:-1] if sealed else fields[1:]
        signed, now = ceremony.signed, ceremony.clock()
        if sealed:  # checked as of its timestamps: its certificates may have expired long ago
            await _off_loop(lambda: ltv.check_sealed(pdf, pki.root, now))
        else:
            await _off_loop(lambda: pdfsign.check_document(pdf, pki.root, signed, now))
        if sealed:
            ceremony.status = "sealed"
        else:
            complete = ceremony._next_signer() is None
            ceremony.status = "declined" if declined else "complete" if complete else "signing"
        ceremony._pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        return ceremony

    # --- freeze and supersede ---------------------------------------------------------------

    async def freeze(self, agreement: Agreement) -> list[Event]:
        """Render and certify version 1 (or the next version, via `supersede`)."""
        return _promoted(await self.stage_freeze(agreement)).events

    async def stage_freeze(self, agreement: Agreement) -> Step:
        async with self._lock:
            if self.status != "new":
                raise EsignError("already_frozen", "this ceremony already has an agreement")
            return await self._stage_freeze(agreement, [])

    async def _stage_freeze(self, agreement: Agreement, first: list[Event]) -> Step:
        check_policy(agreement)
        path = self._path_of(agreement)
        seal, key, chain = self._seal_certificate(), self.pki.seal_key, self._chain()
        reason = f"Frozen agreement {agreement.case_no} v{agreement.version}"

        async def work():
            rendered = render_agreement_pdf(agreement)
            certified = await pdfsign.certify(
                rendered,
                seal_cert=seal,
                seal_key=key,
                chain=chain,
                timestamper=self.timestamper,
                reason=reason,
            )
            return rendered, certified, pdfstore.stage(path, certified)

        rendered, certified, staged = await _off_loop(work)
        digest = pdfstore.sha256(certified)

        def apply() -> None:
            self.agreement = agreement
            self.status = "signing"
            self.signed = []
            self._pending.clear()
            self._pdf_sha256 = digest

        events = [
            *first,
            _event(
                "agreement.frozen",
                case_no=agreement.case_no,
                version=agreement.version,
                fingerprint=fingerprint(agreement),
                rendered_sha256=pdfstore.sha256(rendered),
            ),
            _event("agreement.certified", version=agreement.version, pdf_sha256=digest),
        ]
        return Step(events, staged, path, apply)

    def _chain(self) -> list[x509.Certificate]:
        return [self.pki.signer_ca, self.pki.root]

    async def supersede(self, agreement: Agreement) -> list[Event]:
        """An edit after freeze: version N+1; signatures on version N are void."""
        return _promoted(await self.stage_supersede(agreement)).events

    async def stage_supersede(self, agreement: Agreement) -> Step:
        async with self._lock:
            old = self._require_agreement()
            if self.status == "sealed":
                raise EsignError("already_sealed", "a sealed agreement cannot be edited")
            if agreement.version != old.version + 1 or agreement.case_no != old.case_no:
                raise EsignError("bad_version", f"the next version must be {old.version + 1}")
            agreement = msgspec.structs.replace(
                agreement, supersedes=Supersedes(old.version, fingerprint(old))
            )
            discarded = list(self.signed)
            event = _event(
                "agreement.superseded",
                old_version=old.version,
                old_fingerprint=fingerprint(old),
                new_version=agreement.version,
                discarded_signatures=discarded,
            )
            return await self._stage_freeze(agreement, [event])

    # --- enrolment --------------------------------------------------------------------------

    def challenge(self, participant_id: str) -> EnrolChallenge:
        """A single-use nonce the phone signs to prove it holds its new key."""
        nonce = secrets.token_bytes(32)
        expires = self.clock() + CHALLENGE_TTL
        self._challenges[participant_id] = (nonce, expires)
        return EnrolChallenge(nonce=b64e(nonce), expires_at=expires.isoformat())

    def enrol(
        self, request: EnrolRequest, attestation: IdentityAttestation
    ) -> tuple[Enrolment, list[Event]]:
        """Verify proof of possession and issue the ~30-minute event certificate."""
        role = check_signer(self._require_agreement(), request.participant_id, attestation)
        issued = self._challenges.pop(request.participant_id, None)
        nonce = b64d(request.nonce, "nonce", 64)
        if issued is None or issued[0] != nonce or issued[1] < self.clock():
            raise EsignError("bad_challenge", "unknown, used or expired enrolment challenge")
        try:
            key = serialization.load_der_public_key(
                b64d(request.public_key_spki, "public_key", 1024)
            )
        except ValueError as exc:
            raise EsignError("malformed_public_key", "not a DER SubjectPublicKeyInfo") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise EsignError("wrong_key_type", "signing keys must be ECDSA P-256")
        der = p1363_to_der(b64d(request.proof_of_possession, "signature", 256))
        try:
            key.verify(der, POP_PREFIX + nonce, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise EsignError("bad_proof_of_possession", "the key did not sign the nonce") from exc
        agreement = self._require_agreement()
        cert = self.pki.issue_event_certificate(
            key,
            name=attestation.name,
            id_digest=attestation.id_digest or f"STAFF-{agreement.mediator.staff_id}",
            case_no=agreement.case_no,
            role=role,
            now=self.clock(),
        )
        return self._register(request.participant_id, cert, attestation, role)

    def attach_certificate(
        self, participant_id: str, cert: x509.Certificate, attestation: IdentityAttestation
    ) -> tuple[Enrolment, list[Event]]:
        """Enrol with a certificate issued elsewhere (an external CA's event certificate)."""
        role = check_signer(self._require_agreement(), participant_id, attestation)
        return self._register(participant_id, cert, attestation, role)

    def _register(self, participant_id, cert, attestation, role):
        self._enrolled[participant_id] = _Enrolled(cert, attestation)
        self._used_certs.append(cert)
        pem = serialization.Encoding.DER
        enrolment = Enrolment(
            type="esign.enrolment",
            certificate=b64e(cert.public_bytes(pem)),
            chain=[
                b64e(self.pki.signer_ca.public_bytes(pem)),
                b64e(self.pki.root.public_bytes(pem)),
            ],
            not_after=cert.not_valid_after_utc.isoformat(),
        )
        event = _event(
            "cert.issued",
            participant_id=participant_id,
            role=role,
            serial=str(cert.serial_number),
            cert_sha256=cert_sha256(cert),
            spki_sha256=spki_sha256(cert.public_key()),
            not_after=enrolment.not_after,
            identity_evidence=sorted(attestation.checks),
        )
        return enrolment, [event]

    # --- signing ----------------------------------------------------------------------------

    def _require_agreement(self) -> Agreement:
        if self.agreement is None:
            raise EsignError("not_frozen", "no agreement has been frozen yet")
        return self.agreement

    def _next_signer(self) -> tuple[str, str] | None:
        remaining = [entry for entry in self.order if entry[1] not in self.signed]
        return remaining[0] if remaining else None

    def _usable_cert(self, participant_id: str) -> x509.Certificate:
        agreement = self._require_agreement()
        enrolled = self._enrolled.get(participant_id)
        if enrolled is None:
            raise EsignError("not_enrolled", "enrol (identity check + key) before signing")
        cert, now = enrolled.cert, self.clock()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise EsignError("certificate_expired", "the signing window has closed; enrol again")
        role = signer_role(agreement, participant_id)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if uris != [event_san(agreement.case_no, role)]:
            raise EsignError("certificate_wrong_case", "certificate is for another case or role")
        try:
            cert.verify_directly_issued_by(self.pki.signer_ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise EsignError("certificate_untrusted", "not issued by our signer CA") from exc
        return cert

    def _drop_expired(self) -> list[Event]:
        now, events = self.clock(), []
        for token, pending in list(self._pending.items()):
            if pending.expires < now:
                del self._pending[token]
                events.append(
                    _event(
                        "signature.aborted",
                        participant_id=pending.participant_id,
                        field=pending.field_name,
                        reason="prepare_expired",
                    )
                )
        return events

    async def prepare(
        self, participant_id: str, ledger_head: str = ""
    ) -> tuple[SignatureRequest, list[Event]]:
        """Validate the current PDF and reserve the signer's revision; return what to sign."""
        async with self._lock:
            agreement = self._require_agreement()
            events = self._drop_expired()
            if self.status != "signing":
                raise EsignError("not_signing", f"agreement is {self.status}")
            nxt = self._next_signer()
            if nxt is None or nxt[0] != participant_id:
                raise EsignError("not_your_turn", "another signer is next")
            field = nxt[1]
            cert = self._usable_cert(participant_id)
            path, signed, now, chain = self.path, list(self.signed), self.clock(), self._chain()

            async def work():
                current = path.read_bytes()
                await pdfsign.check_document(current, self.pki.root, signed, now)
                if pdfstore.sha256(current) != self._pdf_sha256:
                    raise EsignError(
                        "document_modified", "stored PDF differs from the last revision"
                    )
                prepared = await pdfsign.prepare_signature(
                    current,
                    field_name=field,
                    cert=cert,
                    chain=chain,
                    reason=f"Signed {agreement.case_no} v{agreement.version}; ledger {ledger_head}",
                    location="Parley mediation session",
                    timestamper=self.timestamper,
                    identity_checks=sorted(self._enrolled[participant_id].attestation.checks),
                    moment=now,
                )
                return current, prepared

            current, prepared = await _off_loop(work)
            for token, pending in list(self._pending.items()):
                if pending.participant_id == participant_id:  # the phone asked again
                    del self._pending[token]
            token = secrets.token_urlsafe(24)
            expires = self.clock() + PREPARE_TTL
            self._pending[token] = _Pending(participant_id, field, prepared, expires, ledger_head)
            request = SignatureRequest(
                type="esign.sign_request",
                token=token,
                case_no=agreement.case_no,
                version=agreement.version,
                field_name=field,
                fingerprint=fingerprint(agreement),
                prepared_pdf=b64e(prepared.prepared_pdf),
                byte_range=prepared.byte_range,
                signed_attrs=b64e(prepared.signed_attrs_der),
                certificate=b64e(cert.public_bytes(serialization.Encoding.DER)),
                reviewed_base_len=len(current),
                reviewed_base_sha256=self._pdf_sha256,
                expires_at=expires.isoformat(),
            )
            events.append(
                _event(
                    "signature.prepared",
                    participant_id=participant_id,
                    field=field,
                    signed_attrs_sha256=hashlib.sha256(prepared.signed_attrs_der).hexdigest(),
                    document_digest=prepared.digest.document_digest.hex(),
                    base_pdf_sha256=self._pdf_sha256,
                )
            )
            return request, events

    async def finish(self, reply: SignatureReply) -> tuple[Receipt, list[Event]]:
        """Verify the phone's raw signature against *this* request, then embed it."""
        step = _promoted(await self.stage_finish(reply))
        return step.result, step.events

    async def stage_finish(self, reply: SignatureReply) -> Step:
        async with self._lock:
            agreement = self._require_agreement()
            expired = self._drop_expired()
            pending = self._pending.get(reply.token)
            if pending is None:
                code = "prepare_expired" if expired else "unknown_token"
                raise EsignError(code, "no open signature request for this token")
            if self.status != "signing":
                raise EsignError("not_signing", f"agreement is {self.status}")
            cert = self._usable_cert(pending.participant_id)
            der = p1363_to_der(b64d(reply.signature_p1363, "signature", 128))
            try:
                cert.public_key().verify(
                    der, pending.prepared.signed_attrs_der, ec.ECDSA(hashes.SHA256())
                )
            except InvalidSignature as exc:
                raise EsignError(
                    "bad_signature", "signature does not match this request's attributes"
                ) from exc
            path, fields, moment = self.path, [*self.signed, pending.field_name], self.clock()

            async def work():
                signed = await pdfsign.finish_signature(pending.prepared, der, self.timestamper)
                await pdfsign.check_document(signed, self.pki.root, fields, moment)
                return signed, pdfstore.stage(path, signed)

            signed, staged = await _off_loop(work)
            digest = pdfstore.sha256(signed)

            def apply() -> None:
                self._pending.pop(reply.token, None)
                self.signed.append(pending.field_name)
                if self._next_signer() is None:
                    self.status = "complete"
                self._pdf_sha256 = digest

            now = self.clock().isoformat()
            receipt = Receipt(
                type="esign.receipt",
                case_no=agreement.case_no,
                version=agreement.version,
                field_name=pending.field_name,
                participant_id=pending.participant_id,
                pdf_sha256=digest,
                ledger_head=pending.ledger_head,
                signed_at=now,
            )
            event = _event(
                "signature.embedded",
                participant_id=pending.participant_id,
                field=pending.field_name,
                version=agreement.version,
                pdf_sha256=digest,
                cert_sha256=cert_sha256(cert),
                ledger_head=pending.ledger_head,
            )
            return Step([*expired, event], staged, path, apply, receipt)

    async def decline(self, request: DeclineRequest) -> list[Event]:
        """A signer refuses: this version can no longer complete; signatures so far stay."""
        return _promoted(await self.stage_decline(request)).events

    async def stage_decline(self, request: DeclineRequest) -> Step:
        async with self._lock:
            return self._decline(request)

    def _decline(self, request: DeclineRequest) -> Step:
        agreement = self._require_agreement()
        if signer_role(agreement, request.participant_id) is None:
            raise EsignError("not_a_signer", "this participant does not sign this agreement")
        if self.status != "signing":
            raise EsignError("not_signing", f"agreement is {self.status}")
        field = next(f for p, f in self.order if p == request.participant_id)
        if field in self.signed:
            raise EsignError("already_signed", "a signer who signed cannot decline this version")

        def apply() -> None:
            self._pending.clear()
            self.status = "declined"

        event = _event(
            "signature.declined",
            participant_id=request.participant_id,
            version=agreement.version,
            reason=request.reason,
            signed_before=list(self.signed),
        )
        return Step([event], None, None, apply)

    async def cancel(self, participant_id: str, reason: str = "phone_gone") -> list[Event]:
        """Drop an open signature request (the phone vanished); the PDF is unchanged."""
        async with self._lock:
            return self._cancel(participant_id, reason)

    def _cancel(self, participant_id: str, reason: str) -> list[Event]:
        dropped = [t for t, p in self._pending.items() if p.participant_id == participant_id]
        for token in dropped:
            del self._pending[token]
        if not dropped:
            return []
        return [_event("signature.aborted", participant_id=participant_id, reason=reason)]

    # --- seal -------------------------------------------------------------------------------

    async def seal(self) -> list[Event]:
        """Organisation seal, revocation data for every certificate, document timestamp."""
        return _promoted(await self.stage_seal()).events

    async def stage_seal(self) -> Step:
        async with self._lock:
            agreement = self._require_agreement()
            if self.status != "complete":
                raise EsignError("not_complete", f"agreement is {self.status}")
            seal = self._seal_certificate()
            now, path, signed, pki = self.clock(), self.path, list(self.signed), self.pki
            certs = [*self._used_certs, pki.signer_ca, pki.tsa_cert]
            unique = {cert_sha256(c): c for c in certs}

            async def work():
                current = path.read_bytes()
                await pdfsign.check_document(current, pki.root, signed, now)
                ocsps = [pki.ocsp_response(c, now) for c in unique.values()]
                crls = [pki.crl(pki.root, now), pki.crl(pki.signer_ca, now)]
                sealed = await pdfsign.seal_and_close(
                    current,
                    seal_cert=seal,
                    seal_key=pki.seal_key,
                    chain=self._chain(),
                    timestamper=self.timestamper,
                    revocation=(ocsps, crls),
                    all_certs=[*unique.values(), pki.root],
                    reason=f"Sealed by {agreement.organisation}",
                )
                await pdfsign.check_document(sealed, pki.root, signed, now, sealed=True)
                return sealed, pdfstore.stage(path, sealed)

            sealed, staged = await _off_loop(work)
            digest = pdfstore.sha256(sealed)

            def apply() -> None:
                self.status = "sealed"
                self._pdf_sha256 = digest

            event = _event(
                "agreement.sealed",
                version=agreement.version,
                pdf_sha256=digest,
                seal_cert_sha256=cert_sha256(seal),
                signatures=signed,
            )
            return Step([event], staged, path, apply)

    def certificates(self) -> list[x509.Certificate]:
        """Every certificate this ceremony issued or used (for the evidence bundle)."""
        return list({cert_sha256(c): c for c in self._used_certs}.values())

    def to_dict(self) -> dict:
        agreement = self.agreement
        return {
            "status": self.status,
            "case_no": agreement.case_no if agreement else None,
            "version": agreement.version if agreement else None,
            "signed": list(self.signed),
            "next": (self._next_signer() or (None,))[0] if agreement else None,
            "pdf_sha256": self._pdf_sha256,
        }
