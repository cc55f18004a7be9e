"""Who may sign: the signer rules of issue 5, as one pure function.

The session layer runs the identity checks and attests them (`IdentityAttestation`); this
module decides whether that attestation lets the participant sign *this* agreement. Case-type
exclusions live with the agreement data (`agreement.check_policy`).
"""

from __future__ import annotations

from esign.agreement import Agreement, signer_role
from esign.errors import EsignError
from esign.protocol import IDENTITY_CHECKS, IdentityAttestation

# A party needs the invitation link plus one check that ties the person to the identity.
PARTY_STRONG_CHECKS = frozenset({"mediator_video_check", "one_time_code", "real_name_check"})


def check_signer(agreement: Agreement, participant_id: str, who: IdentityAttestation) -> str:
    """The signer role ('applicant' / 'respondent' / 'mediator') or an EsignError."""
    if who.session_id != agreement.session_id:
        raise EsignError("not_in_session", "the participant is not in this session")
    if who.participant_id != participant_id:
        raise EsignError("identity_mismatch", "attestation is for another participant")
    if who.role == "counsel" or who.acting_for is not None:
        raise EsignError("counsel_cannot_sign", "only the party may sign; counsel cannot")
    unknown = set(who.checks) - IDENTITY_CHECKS
    if unknown:
        raise EsignError("invalid_attestation", f"unknown identity checks {sorted(unknown)}")
    role = signer_role(agreement, participant_id)
    if role is None or who.role not in ("party", "mediator"):
        raise EsignError("not_a_signer", "this participant does not sign this agreement")
    checks = set(who.checks)
    if role == "mediator":
        ok = who.role == "mediator" and who.name == agreement.mediator.name
        ok = ok and "staff_login" in checks
    else:
        party = next(p for p in agreement.parties if p.participant_id == participant_id)
        ok = who.role == "party" and who.name == party.name and who.id_digest == party.id_digest
        ok = ok and "invitation_token" in checks and bool(PARTY_STRONG_CHECKS & checks)
    if not ok:
        raise EsignError("identity_not_verified", "identity checks missing or not matching")
    return role
