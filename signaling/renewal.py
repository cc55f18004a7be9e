"""The archive timestamp job: keeps every sealed agreement verifiable for decades.

One pass (`renew_sealed`) first rolls over PKI keys that end too soon, then, for each sealed
agreement in the ledger whose last document timestamp is due (`esign.archive.due`), appends
an archive timestamp to its PDF, staged on disk, records `agreement.renewed` (server-only
command `renew_agreement`, accepted after the session ended) and promotes the staged file
under the ledger's lock — the same two-phase write as every signing step. The server runs a
pass daily; `server.py esign renew` runs one from the command line (server stopped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import importlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from esign import pdfstore
from esign.errors import EsignError
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.policy import SYSTEM

if TYPE_CHECKING:  # the PDF and signature stack (pyHanko, ~28 MB) loads when a pass runs
    from esign.pki import LocalPki

STACK = ("esign.archive", "esign.ltv", "esign.pki", "esign.tsa", "pyhanko.pdf_utils.reader")


def _import_stack() -> None:
    for name in STACK:
        importlib.import_module(name)


log = logging.getLogger("parley.esign.renewal")
INTERVAL_SECONDS = 24 * 3600


@dataclasses.dataclass
class Outcome:
    session_id: str
    result: str  # renewed | not_due | failed
    detail: str = ""


async def renew_sealed(
    service, data_dir: Path, pki: LocalPki, clock: Callable[[], dt.datetime] | None = None
) -> list[Outcome]:
    """One pass of the job over every sealed agreement (see the module docstring)."""
    await asyncio.to_thread(_import_stack)  # off the event loop: it takes seconds
    from esign import archive
    from esign.pki import local_timestamp_authority
    from esign.tsa import AuthorityTimeStamper

    clock = clock or (lambda: dt.datetime.now(dt.UTC))
    now = clock()
    for name in await asyncio.to_thread(archive.maintain_pki, pki, now):
        log.info("rolled over the %s key", name)
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock))
    outcomes = []
    for state in service.sessions():
        agreement = state.agreement
        if agreement.get("status") != "sealed":
            continue
        try:
            outcomes.append(
                await _renew_one(service, data_dir, state.id, agreement, pki, stamper, now)
            )
        except (EsignError, CommandError, OSError) as exc:
            log.error("archive timestamp for %s failed: %s", state.id, exc)
            outcomes.append(Outcome(state.id, "failed", str(exc)))
    return outcomes


async def _renew_one(service, data_dir, session_id, agreement, pki, stamper, now) -> Outcome:
    from pyhanko.pdf_utils.reader import PdfFileReader

    from esign import archive, ltv

    store = data_dir / "agreements" / session_id
    recorded = agreement.get("pdf_sha256", "")
    path = await asyncio.to_thread(pdfstore.recover, store, agreement["version"], recorded)
    if path is None:
        raise EsignError("document_modified", "the agreement file is missing")
    pdf = await asyncio.to_thread(path.read_bytes)
    if hashlib.sha256(pdf).hexdigest() != recorded:
        raise EsignError("document_modified", "the agreement file is not what the ledger says")
    if not archive.due(pdf, now):
        return Outcome(session_id, "not_due")
    renewed = await asyncio.to_thread(lambda: asyncio.run(archive.renew(pdf, pki, stamper, now)))
    staged = await asyncio.to_thread(pdfstore.stage, path, renewed)
    last = PdfFileReader(io.BytesIO(renewed)).embedded_signatures[-1].signed_data
    tsa = ltv.token_signer(last)
    event = {
        "type": "agreement.renewed",
        "data": {
            "version": agreement["version"],
            "previous_pdf_sha256": recorded,
            "pdf_sha256": pdfstore.sha256(renewed),
            "timestamp": ltv.token_time(last).isoformat(),
            "tsa_cert_sha256": hashlib.sha256(tsa.dump()).hexdigest() if tsa else None,
            "added_bytes": len(renewed) - len(pdf),
        },
    }
    command = decode_command({"type": "renew_agreement", "events": [event]})
    try:
        service.execute(session_id, SYSTEM, command, promote=lambda: pdfstore.promote(staged, path))
    except CommandError:
        pdfstore.discard(staged)
        raise
    return Outcome(session_id, "renewed", event["data"]["timestamp"])


async def run_forever(service, data_dir: Path, pki_opener: Callable[[], LocalPki | None]):
    """The server's daily pass (started at startup; cancelled at shutdown)."""
    while True:
        if (data_dir / "esign-pki").exists():  # the opener would import the stack on the loop
            await asyncio.to_thread(_import_stack)
        pki = pki_opener()
        if pki is not None:
            try:
                outcomes = await renew_sealed(service, data_dir, pki)
                renewed = [o.session_id for o in outcomes if o.result == "renewed"]
                if renewed:
                    log.info("archive timestamps added", extra={"sessions": renewed})
            except Exception:  # noqa: BLE001 - the job must keep running next day
                log.exception("archive timestamp pass failed")
        await asyncio.sleep(INTERVAL_SECONDS)
