"""The agreement desk: carries a session's signing ceremony between phones, esign/ and rooms/.

esign/ does the cryptography and says which events happened; rooms/ decides whether this actor
may record them now and appends them to the session's ledger. A step is checked against rooms
first (a dry run, so a refused actor costs no cryptography), then computed by esign off the
event loop with its new PDF only staged, then recorded: ``SessionService.execute`` decides
again and appends under the service's lock, and promotes the staged PDF under that same lock.
No session end or removal can come between the decision and the promotion; a refused step
leaves nothing behind, and a crash between append and promotion is finished on the next open
(``esign.pdfstore.recover``). The desk's own per-session lock only keeps one slow step at a
time per session.

Errors: rooms refusals raise CommandError, esign refusals EsignError (its own codes, e.g.
``not_your_turn``, ``bad_signature``); the namespace answers either with its code.

Identity for signing is vouched for here, from what the server itself saw: the invitation
token (always), the mediator's "identity checked on video" mark (rooms state), and a staff
login for the mediator (a console-issued token).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import importlib
import logging
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import msgspec

from esign import pdfstore
from esign.agreement import Agreement, Mediator, Party, signing_order
from esign.errors import EsignError
from esign.protocol import DeclineRequest, EnrolRequest, IdentityAttestation, SignatureReply
from rooms.commands import decode_command
from rooms.errors import CommandError
from signaling.guard import refusal
from signaling.keyfile import load_or_create
from signaling.messages import BadMessage

if TYPE_CHECKING:  # the PDF and signature stack (pyHanko, fontTools: ~28 MB) loads on first use
    from esign.ceremony import SignatureCeremony, Step
    from esign.pki import LocalPki

log = logging.getLogger("parley.agreements")
CASE_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$")


_STACK = ("esign.pki", "esign.tsa", "esign.ceremony", "esign.evidence")
_STACK_LOADED = False


def _load_stack() -> None:
    global _STACK_LOADED
    for name in _STACK:
        importlib.import_module(name)
    _STACK_LOADED = True


def _to_builtins(obj) -> dict:
    return msgspec.to_builtins(obj)


class AgreementDesk:
    def __init__(
        self,
        service,
        data_dir: Path,
        *,
        organisation: str,
        passphrase: bytes,
        base_url: str,
        timezone: str = "Asia/Shanghai",
        notifier=None,
        contact=None,
    ) -> None:
        self.service = service
        # After the seal each party gets the PDF and its check code by the notifier (an anchor
        # the server cannot rewrite later); `contact(session_id, participant_id)` gives the
        # address the mediator typed from the case file (signaling.otp.OneTimeCodes.contact).
        self.notifier = notifier
        self.contact = contact
        self.data_dir = data_dir
        self.organisation = organisation
        self.passphrase = passphrase
        self.base_url = base_url
        self.zone = ZoneInfo(timezone)
        self._pki: LocalPki | None = None
        self._root_sha256: str | None = None
        self._timestamper = None
        self.authority = None  # the local RFC 3161 authority, once the PKI is open
        self._ceremonies: dict[str, SignatureCeremony] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one slow step at a time per session
        self._opening: dict[str, asyncio.Lock] = {}  # one ceremony object per session
        self._id_key = hashlib.sha256(b"parley-id-digest" + passphrase).digest()

    # -- resources ------------------------------------------------------------------------------
    async def load(self) -> None:
        """Import the signature and PDF stack (pyHanko, fontTools, ...) on first use, in a thread:
        a server that never signs does not carry it (~28 MB), and importing it (1-3 s) must not
        stall the event loop that forwards everybody's media."""
        if not _STACK_LOADED:
            await asyncio.to_thread(_load_stack)

    def pki(self) -> LocalPki:
        """Opened on first use: creating the CA keys is not worth doing for a server that never
        signs an agreement."""
        if self._pki is None:
            from esign.pki import LocalPki, local_timestamp_authority
            from esign.tsa import AuthorityTimeStamper

            self._pki = LocalPki.open(
                self.data_dir, self.passphrase, self.organisation, self.base_url + "/esign"
            )
            self.authority = local_timestamp_authority(self._pki)
            self._timestamper = AuthorityTimeStamper(self.authority)
        return self._pki

    def root_sha256(self) -> str:
        """The organisation root's fingerprint (SHA-256 of its DER), for the invitation links'
        ``#root=`` fragment: the signing page checks its certificate chain against it. Read from
        ``root.pem`` without unlocking any key when the PKI exists; created on first use."""
        if self._root_sha256 is None:
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            pem = self.data_dir / "esign-pki" / "root.pem"
            if self._pki is not None or not pem.exists():
                root = self.pki().root
            else:
                root = x509.load_pem_x509_certificate(pem.read_bytes())
            self._root_sha256 = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
        return self._root_sha256

    def invitation_fragment(self) -> str:
        """``#root=<fingerprint>`` for an invitation link: a fragment never reaches the server,
        so what the phone checks against came with the invitation, not from the server later."""
        return f"#root={self.root_sha256()}"

    async def ceremony(self, session_id: str) -> SignatureCeremony:
        """The session's ceremony; after a restart it is resumed from the current PDF, which
        must be the revision the ledger last recorded (else ``document_modified``)."""
        await self.load()
        async with self._opening.setdefault(session_id, asyncio.Lock()):
            if session_id not in self._ceremonies:
                self._ceremonies[session_id] = await self._open_ceremony(session_id)
        return self._ceremonies[session_id]

    async def _open_ceremony(self, session_id: str) -> SignatureCeremony:
        from esign.ceremony import SignatureCeremony

        pki = self.pki()
        store = self.data_dir / "agreements" / session_id
        agreement = self.service.state(session_id).agreement
        if agreement.get("version"):
            version, recorded = agreement["version"], agreement.get("pdf_sha256", "")
            found = await asyncio.to_thread(pdfstore.recover, store, version, recorded)
            if found is None:
                raise EsignError("document_modified", "the agreement file is missing")
            data = await asyncio.to_thread(found.read_bytes)
            if hashlib.sha256(data).hexdigest() != recorded:
                raise EsignError(
                    "document_modified", "the agreement file is not what the ledger says"
                )
            return await SignatureCeremony.resume(
                pki, self._timestamper, found, declined=agreement.get("status") == "declined"
            )
        if store.is_dir():  # nothing frozen yet: drop what a crashed first freeze staged
            await asyncio.to_thread(pdfstore.recover, store, 1, "")
        return SignatureCeremony(pki, self._timestamper, store)

    def lock(self, session_id: str) -> asyncio.Lock:
        """One slow step at a time per session (the ledger's decision and the PDF's promotion
        are serialised by the session service's own lock, not by this one)."""
        return self._locks.setdefault(session_id, asyncio.Lock())

    # -- rooms helpers ------------------------------------------------------------------------
    def _check(self, session_id: str, actor: str, raw: dict) -> None:
        self.service.check(session_id, actor, decode_command(raw))

    def _record(self, session_id: str, actor: str, raw: dict, step: Step | None = None) -> None:
        """Append the command's events; with a ``step``, promote its staged PDF under the
        service's lock right after the append, or discard it if rooms refuses."""
        if step is None:
            self.service.execute(session_id, actor, decode_command(raw))
            return
        appended = False

        def promote() -> None:
            nonlocal appended
            appended = True
            step.promote()

        try:
            self.service.execute(session_id, actor, decode_command(raw), promote=promote)
        except Exception:
            if appended:  # recorded, not promoted: the next open finishes the promotion
                self._ceremonies.pop(session_id, None)
            else:
                step.discard()
            raise

    def id_digest(self, session_id: str, participant_id: str) -> str:
        """A pseudonymous, stable identifier for a party in this session's certificates."""
        mac = hmac.new(self._id_key, f"{session_id}/{participant_id}".encode(), hashlib.sha256)
        return "PID-" + mac.hexdigest()[:32]

    def build_agreement(self, state, version: int = 1) -> Agreement:
        a = state.agreement
        if not a.get("draft"):
            raise CommandError("conflict", "there is no draft to freeze")
        raw_case = re.sub(r"[^A-Za-z0-9-]", "", state.case_number or "")
        case_no = raw_case if CASE_NO.match(raw_case or "-") else "M-" + state.id[2:10]
        signers, mediator = state.agreement_signers()  # rooms decides who signs on which side
        parties = [
            Party(
                side=side,
                name=p.name,
                participant_id=p.id,
                id_digest=self.id_digest(state.id, p.id),
            )
            for p, side in signers
        ]
        staff_id = (state.created_by or "system").removeprefix("staff:")
        try:
            return Agreement(
                case_no=case_no,
                case_type=a["case_type"],
                session_id=state.id,
                version=version,
                date=dt.datetime.now(self.zone).date().isoformat(),
                language=a["language"],
                organisation=self.organisation,
                parties=parties,
                mediator=Mediator(
                    name=mediator.name,
                    participant_id=mediator.id,
                    staff_id=re.sub(r"[^A-Za-z0-9._:-]", "", staff_id) or "staff",
                ),
                terms=list(a["terms"]),
                ledger_head_at_freeze=state.head,
                # printed exactly as the office writes it; `case_no` is its ASCII key
                case_number=(state.case_number or "").strip() or msgspec.UNSET,
                timezone=self.zone.key,
            )
        except (msgspec.ValidationError, TypeError) as exc:
            raise CommandError("invalid", f"the agreement is not complete: {exc}") from None

    def attestation(self, state, inv) -> IdentityAttestation:
        person = state.participants[inv.participant]
        checks = ["invitation_token"]
        if person.identity_checked and person.identity_method in ("video", "in_person", "document"):
            checks.append("mediator_video_check")
        if person.identity_checked and person.identity_method == "one_time_code":
            checks.append("one_time_code")
        if inv.staff:
            checks.append("staff_login")
        return IdentityAttestation(
            session_id=state.id,
            participant_id=person.id,
            role=person.role,
            name=person.name,
            id_digest=self.id_digest(state.id, person.id) if person.role == "party" else "",
            checks=checks,
        )

    # -- mediator's steps ---------------------------------------------------------------------
    async def draft(self, session_id: str, pid: str, raw: dict) -> dict:
        async with self.lock(session_id):
            # rooms checks and records the draft (it refuses edits after the seal)
            self._record(session_id, pid, {"type": "draft_agreement", **raw})
            state = self.service.state(session_id)
            if state.agreement.get("version"):
                # An edit after freeze: version N+1 at once, earlier signatures discarded.
                return await self._freeze(state, pid, supersede=True)
            return {"ok": True}

    async def freeze(self, session_id: str, pid: str) -> dict:
        async with self.lock(session_id):
            state = self.service.state(session_id)
            if state.agreement.get("version"):
                raise CommandError(
                    "conflict", "already frozen; edit the text to make a new version"
                )
            return await self._freeze(state, pid, supersede=False)

    async def _freeze(self, state, pid: str, *, supersede: bool) -> dict:
        ceremony = await self.ceremony(state.id)
        version = (state.agreement.get("version") or 0) + 1
        agreement = self.build_agreement(state, version)
        signers = [p.participant_id for p in agreement.parties] + [
            agreement.mediator.participant_id
        ]
        first = "agreement.superseded" if supersede else "agreement.frozen"
        self._check(
            state.id,
            pid,
            {
                "type": "freeze_agreement",
                "signers": signers,
                "events": [{"type": first, "data": {}}],
            },
        )
        stage = ceremony.stage_supersede if supersede else ceremony.stage_freeze
        step = await stage(agreement)
        order = [p for p, _ in signing_order(agreement)]
        raw = {"type": "freeze_agreement", "signers": order, "events": step.events}
        self._record(state.id, pid, raw, step)
        return {"ok": True, "version": version}

    async def seal(self, session_id: str, pid: str) -> dict:
        async with self.lock(session_id):
            self._check(
                session_id,
                pid,
                {"type": "seal_agreement", "events": [{"type": "agreement.sealed", "data": {}}]},
            )
            step = await (await self.ceremony(session_id)).stage_seal()
            self._record(session_id, pid, {"type": "seal_agreement", "events": step.events}, step)
        return {"ok": True, "delivered": await self.deliver_sealed(session_id)}

    async def deliver_sealed(self, session_id: str) -> list[str]:
        """Send each party with a known address the sealed PDF, its SHA-256 (the check code)
        and the root fingerprint to verify it with; returns who it was sent to. A failed
        delivery is logged: the agreement stays sealed and downloadable."""
        if self.notifier is None or self.contact is None:
            return []
        from cryptography.hazmat.primitives.serialization import Encoding

        ceremony = await self.ceremony(session_id)
        pdf, agreement = ceremony.pdf, ceremony.agreement
        code = hashlib.sha256(pdf).hexdigest()
        root = hashlib.sha256(self.pki().root.public_bytes(Encoding.DER)).hexdigest()
        sent = []
        for party in agreement.parties:
            to = self.contact(session_id, party.participant_id)
            if not to:
                continue
            text = SEALED_TEXT.format(
                name=party.name,
                case=agreement.case_number or agreement.case_no,
                code=code,
                root=root,
                url=self.base_url + "/verify",
            )
            try:
                await self.notifier.send(
                    to,
                    "调解协议（已签署）Signed mediation agreement",
                    text,
                    attachments=(("agreement.pdf", "application/pdf", pdf),),
                )
                sent.append(party.participant_id)
            except Exception as exc:  # noqa: BLE001 - SMTP/SMS failures of any kind
                log.warning("sealed agreement not delivered to %s: %s", party.participant_id, exc)
        return sent

    # -- a signer's steps ---------------------------------------------------------------------
    def _signer_check(self, session_id: str, pid: str, event_type: str) -> None:
        self._check(
            session_id,
            pid,
            {
                "type": "sign_agreement",
                "events": [{"type": event_type, "data": {"participant_id": pid}}],
            },
        )

    async def esign(self, session_id: str, pid: str, inv, action: str, body: dict) -> dict:
        async with self.lock(session_id):
            state = self.service.state(session_id)
            ceremony = await self.ceremony(session_id)
            try:
                if action == "challenge":
                    self._signer_check(session_id, pid, "cert.issued")
                    return {"ok": True, "challenge": _to_builtins(ceremony.challenge(pid))}
                if action == "enrol":
                    self._signer_check(session_id, pid, "cert.issued")
                    request = msgspec.convert(body.get("request"), EnrolRequest)
                    if request.participant_id != pid:
                        raise CommandError("forbidden", "you enrol only your own key")
                    enrolment, events = ceremony.enrol(request, self.attestation(state, inv))
                    self._record_own(session_id, pid, events)
                    return {"ok": True, "enrolment": _to_builtins(enrolment)}
                if action == "prepare":
                    self._signer_check(session_id, pid, "signature.prepared")
                    request, events = await ceremony.prepare(pid, ledger_head=state.head)
                    self._record_own(session_id, pid, events)
                    return {"ok": True, "request": _to_builtins(request)}
                if action == "sign":
                    self._signer_check(session_id, pid, "signature.embedded")
                    reply = msgspec.convert(body.get("reply"), SignatureReply)
                    step = await ceremony.stage_finish(reply)
                    self._record_own(session_id, pid, step.events, step)
                    return {"ok": True, "receipt": _to_builtins(step.result)}
                if action == "decline":
                    self._signer_check(session_id, pid, "signature.declined")
                    reason = str(body.get("reason", ""))[:500]
                    step = await ceremony.stage_decline(
                        DeclineRequest(type="esign.decline", participant_id=pid, reason=reason)
                    )
                    self._record_own(session_id, pid, step.events, step)
                    return {"ok": True}
            except msgspec.ValidationError as exc:
                raise BadMessage("invalid_message", str(exc)) from None
            raise BadMessage("invalid_message", f"unknown esign action {action[:20]!r}")

    def _record_own(
        self, session_id: str, pid: str, events: list[dict], step: Step | None = None
    ) -> None:
        """Record a signer's events (promoting the step's PDF with them); expired preparations
        of others are recorded by the system."""
        mine = [e for e in events if e["data"].get("participant_id") == pid]
        others = [e for e in events if e["data"].get("participant_id") != pid]
        if others:
            self._record(session_id, "system", {"type": "sign_agreement", "events": others})
        if mine:
            self._record(session_id, pid, {"type": "sign_agreement", "events": mine}, step)

    async def phone_gone(self, session_id: str, pid: str) -> None:
        """A signer's phone disconnected: drop its prepared revision (the PDF is unchanged)."""
        ceremony = self._ceremonies.get(session_id)
        if ceremony is None:
            return
        async with self.lock(session_id):
            try:
                events = await ceremony.cancel(pid, "phone_gone")
                if events:
                    self._record(session_id, "system", {"type": "sign_agreement", "events": events})
            except (EsignError, CommandError) as exc:
                log.info("cancel after disconnect not recorded: %s", exc)

    # -- downloads ------------------------------------------------------------------------------
    async def pdf(self, session_id: str) -> bytes | None:
        if not self.service.state(session_id).agreement.get("version"):
            return None
        ceremony = await self.ceremony(session_id)
        return await asyncio.to_thread(lambda: ceremony.pdf)

    async def evidence(self, session_id: str) -> bytes:
        ceremony = await self.ceremony(session_id)
        if ceremony.status != "sealed":
            raise CommandError("conflict", "the agreement is not sealed yet")
        ledger = [msgspec.to_builtins(e) for e in self.service.events(session_id)]
        from esign.evidence import build_evidence_zip

        return await build_evidence_zip(
            ceremony.pdf,
            pki=self.pki(),
            timestamper=self._timestamper,
            ledger=ledger,
            certificates=ceremony.certificates(),
        )


SEALED_TEXT = (
    "{name}，您好：\n案号 {case} 的调解协议已由各方签署并加盖调解组织印章，签署后的协议见附件"
    "（agreement.pdf），请妥善保存。\n协议校验码（SHA-256）：{code}\n"
    "调解组织根证书指纹：{root}\n"
    "核验：在浏览器打开 {url} ，选择附件并输入根证书指纹（文件不会上传）；"
    "或离线运行 python server.py verify agreement.pdf --root {root}\n\n"
    "Hello {name},\nthe mediation agreement of case {case} has been signed by everyone and "
    "sealed; the signed agreement is attached (agreement.pdf). Keep it.\n"
    "Check code (SHA-256): {code}\nOrganisation root fingerprint: {root}\n"
    "To verify: open {url}, choose the attachment and enter the root fingerprint (the file is "
    "not uploaded); or offline: python server.py verify agreement.pdf --root {root}\n"
)


def load_or_create_passphrase(path: Path) -> bytes:
    """The e-signature keys' passphrase, when configuration gives none."""
    return load_or_create(path, lambda: secrets.token_urlsafe(32).encode(), min_length=12).strip()


def agreement_routes(desk: AgreementDesk, signer, service) -> list:
    """``agreement.pdf`` for every participant of the session (the exact bytes being signed, or
    the sealed result); ``evidence.zip`` for the mediator once the agreement is sealed."""
    from aiohttp import web

    from signaling.bearer import bearer_participant
    from signaling.tokens import TokenError

    fail = refusal

    def who(request):
        try:
            return bearer_participant(request, signer, service), None
        except TokenError as exc:
            return None, fail("forbidden", exc.message, 403)
        except CommandError as exc:
            return None, fail(exc.code, exc.message, 404)

    async def pdf(request: web.Request) -> web.Response:
        found, error = who(request)
        if error:
            return error
        state, _, _ = found
        try:
            data = await desk.pdf(state.id)
        except EsignError as exc:
            return fail(exc.code, exc.message, 409)
        if data is None:
            return fail("not_found", "the agreement has not been frozen yet", 404)
        return web.Response(
            body=data,
            content_type="application/pdf",
            headers={
                "Content-Disposition": "inline; filename=agreement.pdf",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def evidence(request: web.Request) -> web.Response:
        found, error = who(request)
        if error:
            return error
        state, pid, _ = found
        if not state.is_host(pid):
            return fail("forbidden", "the evidence bundle is for the mediator", 403)
        try:
            data = await desk.evidence(state.id)
        except (CommandError, EsignError) as exc:
            return fail(exc.code, exc.message, 409)
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={
                "Content-Disposition": "attachment; filename=evidence.zip",
                "Cache-Control": "no-store",
            },
        )

    async def tsa(request: web.Request) -> web.Response:
        """Parley's RFC 3161 time-stamping authority, for anyone who wants a timestamp from it
        (the signing itself calls it in-process)."""
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415, text="send application/timestamp-query")
        body = await request.content.read(8 * 1024)
        await desk.load()
        desk.pki()
        from esign.tsa import handle_timestamp_query

        reply = await asyncio.to_thread(handle_timestamp_query, desk.authority, body)
        return web.Response(body=reply, content_type="application/timestamp-reply")

    async def crl(request: web.Request) -> web.Response:
        """The CRLs named in every certificate's distribution point."""
        await desk.load()
        pki = desk.pki()
        issuer = {"root": pki.root, "signer-ca": pki.signer_ca}.get(request.match_info["name"])
        if issuer is None:
            raise web.HTTPNotFound(text="not_found: no such CRL")
        data = await asyncio.to_thread(pki.crl, issuer, dt.datetime.now(dt.UTC))
        return web.Response(body=data, content_type="application/pkix-crl")

    return [
        web.get("/api/sessions/{sid}/agreement.pdf", pdf),
        web.get("/api/sessions/{sid}/evidence.zip", evidence),
        web.post("/esign/tsa", tsa),
        web.get("/esign/crl/{name}.crl", crl),
    ]
