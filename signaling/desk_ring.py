"""The mediator's panel and the duty-lawyer desk (S4): the one-line question for the ringing
desks, and what the panel shows while the desk rings (who accepted, or the fallback link's
reason). The mediator's page holds an invitation, not a staff login, so these routes take its
token as a bearer token (signaling/bearer.py), like the documents; only the session's hosts."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from desk.errors import DeskError
from rooms.errors import CommandError
from signaling.bearer import bearer_participant
from signaling.desk import ConsultDesk
from signaling.desk_http import _Body, answers, body
from signaling.staff import ACCOUNTS
from signaling.tokens import TokenError

HOSTS = ("mediator", "co_mediator")


class AskRequest(_Body):
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


def routes(desk: ConsultDesk) -> list[web.RouteDef]:
    @answers
    async def status(request: web.Request) -> web.Response:
        state, lawyer = _host(request, desk)
        out = desk.ring_status(state.id, lawyer)
        if out["lawyer"]:
            account = request.app[ACCOUNTS].get(out["lawyer"])
            out["lawyer_name"] = account.display_name if account else out["lawyer"]
        return web.json_response({"ok": True, "ring": out}, headers={"Cache-Control": "no-store"})

    @answers
    async def ask(request: web.Request) -> web.Response:
        state, lawyer = _host(request, desk)
        req = await body(request, AskRequest)
        desk.ask(state, lawyer, req.question)
        return web.json_response({"ok": True})

    path = "/api/sessions/{sid}/desk-ring/{participant}"
    return [web.get(path, status), web.post(path, ask)]
