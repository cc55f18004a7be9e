import pytest

from esign.errors import EsignError
from esign.policy import check_signer
from tests.unit.esign.samples import attestation, sample_agreement

AGREEMENT = sample_agreement()
who = attestation


@pytest.mark.parametrize(
    ("pid", "role"), [("p-app", "applicant"), ("p-res", "respondent"), ("p-med", "mediator")]
)
def test_verified_signers_get_their_role(pid, role):
    assert check_signer(AGREEMENT, pid, who(pid)) == role


@pytest.mark.parametrize(
    ("pid", "changes", "code"),
    [
        ("p-app", {"role": "counsel"}, "counsel_cannot_sign"),
        ("p-app", {"acting_for": "p-app"}, "counsel_cannot_sign"),
        ("p-app", {"role": "interpreter"}, "not_a_signer"),
        ("p-app", {"session_id": "sess-2"}, "not_in_session"),
        ("p-app", {"checks": ["invitation_token"]}, "identity_not_verified"),
        ("p-app", {"checks": ["mediator_video_check"]}, "identity_not_verified"),
        ("p-app", {"id_digest": "PID-" + "00" * 8}, "identity_not_verified"),
        ("p-app", {"role": "mediator"}, "identity_not_verified"),
        ("p-app", {"checks": ["invitation_token", "selfie"]}, "invalid_attestation"),
        ("p-med", {"checks": ["invitation_token", "one_time_code"]}, "identity_not_verified"),
        ("p-med", {"name": "Not the mediator"}, "identity_not_verified"),
        ("p-x", {"role": "party", "name": "X"}, "not_a_signer"),
    ],
)
def test_refusals(pid, changes, code):
    with pytest.raises(EsignError) as err:
        check_signer(AGREEMENT, pid, who(pid, **changes))
    assert err.value.code == code


def test_attestation_for_someone_else_is_refused():
    with pytest.raises(EsignError) as err:
        check_signer(AGREEMENT, "p-res", who("p-app"))
    assert err.value.code == "identity_mismatch"
