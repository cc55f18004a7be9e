"""HTTP requests from the phone page carry the invitation token as a bearer token."""

from __future__ import annotations

from aiohttp import web

from signaling.tokens import TokenError


def bearer_participant(request: web.Request, signer, service):
    """(session state, participant id, invitation) for ``/api/sessions/{sid}/...``.

    Raises TokenError (bad, expired, revoked or foreign token) or CommandError (no session)."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    inv = signer.verify(token, session=request.match_info["sid"])
    state = service.state(inv.session)
    person = state.participants.get(inv.participant)
    if person is None or inv.gen < person.invitation_gen:
        raise TokenError("token_revoked", "this invitation link was replaced")
    return state, inv.participant, inv
