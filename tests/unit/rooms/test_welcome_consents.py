"""The consents a person is asked for on joining are decided by the policy, per role."""

from __future__ import annotations

import pytest

from rooms.policy import POLICIES

PARTY_CONSENTS = ["online_mediation", "session_rules"]


@pytest.mark.parametrize(
    ("kind", "role", "required", "optional"),
    [
        ("mediation", "mediator", [], ["recording"]),  # R8: the host is asked too
        ("mediation", "party", PARTY_CONSENTS, ["recording"]),
        ("mediation", "counsel", ["session_rules"], ["recording"]),
        ("mediation", "duty_lawyer", [], ["recording"]),  # staff are recorded too
        ("mediation", "observer", ["session_rules"], []),  # never publishes, never recorded
        ("visitation", "visitor", ["session_rules"], []),  # recording required, not optional
        ("privileged", "lawyer", [], []),  # recording forbidden
        ("consultation", "duty_lawyer", [], ["recording"]),
        ("consultation", "citizen", [], ["recording"]),
    ],
)
def test_consents_for_each_role(kind, role, required, optional):
    policy = POLICIES[kind]
    assert role in policy.roles
    assert policy.consents_for(role) == {"required": required, "optional": optional}


def test_consents_are_fresh_lists():
    """The welcome message may be changed by its sender without touching the policy."""
    policy = POLICIES["mediation"]
    policy.consents_for("party")["required"].append("x")
    assert policy.consents_for("party")["required"] == PARTY_CONSENTS
