"""The consultation policy with an interpreter on request (docs/desk.md): one to one, plus at
most one interpreter, who may speak, chat, share a document, consent and leave — nothing a host
does. The allowed commands are written by hand from the desk's rules, not read from the policy."""

from __future__ import annotations

import pytest

from rooms.commands import COMMAND_TYPES, decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.policy import CONSULTATION
from rooms.service import ParticipantSpec, SessionService

# command -> roles of a consultation allowed to issue it (participants only; the pseudo-roles
# system and staff are the rooms tables' business)
ALLOWED = {
    "admit": {"duty_lawyer"},
    "return_to_waiting": {"duty_lawyer"},
    "leave": {"duty_lawyer", "citizen", "assistant", "interpreter"},
    "ask_for_mediator": {"citizen", "assistant"},
    "mute": {"duty_lawyer"},
    "unmute": {"duty_lawyer"},
    "remove": {"duty_lawyer"},
    "end_session": {"duty_lawyer"},
    "reissue_invitation": {"duty_lawyer"},
    "mark_identity_checked": {"duty_lawyer"},
    "record_consent": {"duty_lawyer", "citizen", "assistant", "interpreter"},
    "ask_recording": {"duty_lawyer"},  # who may start asks everyone present first
    "start_recording": {"duty_lawyer"},
    "stop_recording": {"duty_lawyer"},
    "chat": {"duty_lawyer", "citizen", "assistant", "interpreter"},
    "share_document": {"duty_lawyer", "citizen", "assistant", "interpreter"},
}
ROLES = ("duty_lawyer", "citizen", "assistant", "interpreter")


def test_the_roles_are_the_lawyer_the_citizen_the_assistant_and_the_interpreter():
    assert set(CONSULTATION.roles) == set(ROLES)
    assert CONSULTATION.landing["interpreter"] == "waiting"  # admitted, as the citizen
    assert "interpreter" not in CONSULTATION.host_roles | CONSULTATION.staff_roles


@pytest.mark.parametrize("command", sorted(COMMAND_TYPES))
@pytest.mark.parametrize("role", ROLES)
def test_each_cell(role, command):
    assert CONSULTATION.allows(role, command) is (role in ALLOWED.get(command, set()))


def _create(*roles: str):
    service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: 1_700_000_000.0)
    specs = [ParticipantSpec(f"{r} {i}", r) for i, r in enumerate(roles)]
    return service.create_session(
        "consultation", actor="staff:li", title="t", case_number=None, participants=specs
    )


def test_one_interpreter_is_allowed_a_second_is_refused():
    state = _create("duty_lawyer", "citizen", "interpreter")
    assert sorted(p.role for p in state.participants.values()) == [
        "citizen",
        "duty_lawyer",
        "interpreter",
    ]
    with pytest.raises(CommandError):
        _create("duty_lawyer", "citizen", "interpreter", "interpreter")
    with pytest.raises(CommandError):  # still one to one
        _create("duty_lawyer", "citizen", "citizen", "interpreter")


def test_only_staff_renames_a_place_when_reissuing_its_link():
    """The desk's transfer renames the lawyer's place; a host may revoke a link, not rename."""
    service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: 1_700_000_000.0)
    state = service.create_session(
        "consultation",
        actor="staff:li",
        title="t",
        case_number=None,
        participants=[ParticipantSpec("李律师", "duty_lawyer"), ParticipantSpec("张三", "citizen")],
    )
    ids = {p.role: p.id for p in state.participants.values()}

    def reissue(actor: str, **extra):
        raw = {"type": "reissue_invitation", "participant": ids["duty_lawyer"]} | extra
        return service.execute(state.id, actor, decode_command(raw))

    with pytest.raises(CommandError) as refused:
        reissue(ids["duty_lawyer"], name="别人")
    assert refused.value.code == "forbidden"
    with pytest.raises(CommandError):
        reissue("staff:wang", name="")  # a name is 1-80 characters
    reissue(ids["duty_lawyer"])  # revoking the link alone: the name stays
    lawyer = service.state(state.id).participants[ids["duty_lawyer"]]
    assert (lawyer.name, lawyer.invitation_gen) == ("李律师", 1)
    reissue("staff:wang", name="王律师")
    lawyer = service.state(state.id).participants[ids["duty_lawyer"]]
    assert (lawyer.name, lawyer.invitation_gen) == ("王律师", 2)
