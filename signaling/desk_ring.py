"""The mediator's panel and the duty-lawyer desk (S4): the one-line question for the ringing
desks, and what the panel shows while the desk rings (who accepted, or the fallback link's
reason). The mediator's page holds an invitation, not a staff login, so these routes take its
token as a bearer token (signaling/bearer.py), like the documents; only the session's hosts."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from desk.errors import DeskError
from desk.roster import free_lawyers, lawyers_on_shift
from desk.store import Ticket
from rooms.errors import CommandError
from signaling.bearer import bearer_participant
from signaling.desk import ConsultDesk
from signaling.desk_http import Body, answers, body
from signaling.staff import ACCOUNTS
from signaling.tokens import TokenError

HOSTS = ("mediator", "co_mediator")


class AskRequest(Body):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]


def _host(request: web.Request, desk: ConsultDesk):
    """The session and the calling host, from the bearer invitation; DeskError otherwise."""
    try:
        state, pid, _ = bearer_participant(request, desk.signer, desk.service, allow_ended=False)
    except TokenError as exc:
        raise DeskError("forbidden", exc.message) from None
    except CommandError as exc:
        raise DeskError("not_found", exc.message) from None
    if state.participants[pid].role not in HOSTS:
        raise DeskError("forbidden", "only the mediator calls the duty-lawyer desk")
    lawyer = state.participants.get(request.match_info["participant"])
    if lawyer is None or lawyer.role != "duty_lawyer":
        raise DeskError("not_found", "no duty lawyer by that id in this session")
    return state, lawyer.id


def _ticket(desk: ConsultDesk, session: str, lawyer_pid: str) -> Ticket:
    """The desk's ticket of this call (the latest, should the mediator call again)."""
    found = [
        t
        for t in desk.store.for_session(session)
        if t.kind == "mediation" and t.lawyer_pid == lawyer_pid
    ]
    if not found:
        raise DeskError("not_found", "the desk was not called for this participant")
    return found[-1]


def set_question(desk: ConsultDesk, session, lawyer_pid: str, question: str) -> None:
    """The mediator's one-line question, shown on every ringing desk after the case number."""
    ticket = _ticket(desk, session.id, lawyer_pid)
    text = " ".join(question.split())
    case = session.case_number or ""
    desk.store.update(
        ticket.id,
        actor="mediator",
        event="question",
        now=desk.clock(),
        expect=("waiting",),
        question=(f"{case}: {text}" if case else text)[:200],
    )


def ring_status(desk: ConsultDesk, session_id: str, lawyer_pid: str) -> dict:
    """What the mediator's panel shows: ringing, accepted (by whom), or over; and whether to
    show the fallback link now (nobody on shift: at once; else after the ring time)."""
    ticket = _ticket(desk, session_id, lawyer_pid)
    now = desk.clock()
    shifts = desk.store.shifts(now)
    elapsed = max(0.0, now - ticket.queued_at)
    out = {
        "question": ticket.question,
        "ring_seconds": desk.ring_seconds,
        "elapsed": round(elapsed, 1),
        "lawyer": None,
        "fallback": False,
        "reason": None,
        "on_shift": len(lawyers_on_shift(shifts, None, now)),
        "available": len(free_lawyers(shifts, desk.store.statuses(), None, now)),
    }
    if ticket.state == "waiting":
        out["state"] = "ringing"
        if not out["on_shift"]:
            out |= {"fallback": True, "reason": "no_lawyer_on_shift"}
        elif elapsed >= desk.ring_seconds:
            out |= {"fallback": True, "reason": "no_answer"}
    elif ticket.state == "serving":
        out |= {"state": "accepted", "lawyer": ticket.lawyer}
    else:
        last = desk.store.log_rows(ticket.id)[-1][3]
        out["state"] = "answered_by_link" if last == "answered_by_link" else "over"
    return out


def routes(desk: ConsultDesk) -> list[web.RouteDef]:
    @answers
    async def status(request: web.Request) -> web.Response:
        state, lawyer = _host(request, desk)
        out = ring_status(desk, state.id, lawyer)
        if out["lawyer"]:
            account = request.app[ACCOUNTS].get(out["lawyer"])
            out["lawyer_name"] = account.display_name if account else out["lawyer"]
        return web.json_response({"ok": True, "ring": out}, headers={"Cache-Control": "no-store"})

    @answers
    async def ask(request: web.Request) -> web.Response:
        state, lawyer = _host(request, desk)
        req = await body(request, AskRequest)
        set_question(desk, state, lawyer, req.question)
        return web.json_response({"ok": True})

    path = "/api/sessions/{sid}/desk-ring/{participant}"
    return [web.get(path, status), web.post(path, ask)]
