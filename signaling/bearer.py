"""Who may still act with an invitation: one check for the socket and for every HTTP route.

The socket checks it on connect and before every event; HTTP requests from the phone page carry
the invitation token as a bearer token and get the same check, so a removed participant or a
revoked link is refused everywhere at once.
"""

from __future__ import annotations

from aiohttp import web

from rooms.state import LEFT, REMOVED
from signaling.tokens import Invitation, TokenError


def live_participant(state, inv: Invitation, *, allow_ended: bool = False, allow_left=False):
    """The session's record of the invitation's holder, if the invitation still admits them.

    Raises TokenError: nobody by that id, session ended (unless ``allow_ended``), participant
    removed, or left (unless ``allow_left``: the socket connecting again brings them back, as
    rooms' ``connect`` with ``rejoin``), link revoked by a newer generation, or a role the records do not hold."""
    person = state.participants.get(inv.participant)
    if person is None:
        raise TokenError("participant_not_found", "this invitation names nobody in the session")
    if state.ended and not allow_ended:
        raise TokenError("session_ended", "this session has ended")
    if person.space == REMOVED:
        raise TokenError("participant_gone", "you were removed from this session")
    if person.space == LEFT and not allow_left:  # open the link again to come back
        raise TokenError("participant_gone", "you have left this session")
    if inv.gen < person.invitation_gen:
        raise TokenError("token_revoked", "this invitation link was replaced by a newer one")
    if inv.role != person.role:
        raise TokenError("token_invalid", "this invitation does not match the session's records")
    return person


def bearer_participant(request: web.Request, signer, service, *, allow_ended: bool = True):
    """(session state, participant id, invitation) for ``/api/sessions/{sid}/...``.

    An ended session still serves its participants by default (the signed agreement is fetched
    after the mediation ends). Raises TokenError (bad, expired, revoked or foreign token, or a
    participant no longer in the session) or CommandError (no session)."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    inv = signer.verify(token, session=request.match_info["sid"])
    state = service.state(inv.session)
    live_participant(state, inv, allow_ended=allow_ended)
    return state, inv.participant, inv
