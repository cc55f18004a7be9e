"""The mediation permission table, written by hand from the domain rules, checked cell by cell
against ``rooms.policy.MEDIATION``.

``test_permissions.py`` proves that the service enforces whatever the policy says; this file
proves that the policy says the right thing. The expectation is not derived from the policy: each
row below was written from the rules of mediation (docs/requirements.md: A1, B1, B2, B5, B6,
R7–R11, R15; docs/rooms.md), and a change to the policy or a new command must come with a
deliberate change here.

Columns: med = mediator, co = co-mediator, party, coun = counsel, supp = support person,
intp = interpreter, duty = duty lawyer (called in), obs = observer, sys = the server itself,
staff = a logged-in staff user acting from the console. ``Y`` allowed, ``.`` refused.
"""

from __future__ import annotations

import pytest

from rooms.commands import COMMAND_TYPES
from rooms.policy import MEDIATION, STAFF, SYSTEM

COLUMNS = {
    "med": "mediator",
    "co": "co_mediator",
    "party": "party",
    "coun": "counsel",
    "supp": "support",
    "intp": "interpreter",
    "duty": "duty_lawyer",
    "obs": "observer",
    "sys": SYSTEM,
    "staff": STAFF,
}

# fmt: off
TABLE = """
command              med co  party coun supp intp duty obs  sys  staff
# media and the clock are observed by the server, never claimed by a client
connect              .   .   .     .    .    .    .    .    Y    .
disconnect           .   .   .     .    .    .    .    .    Y    .
tick                 .   .   .     .    .    .    .    .    Y    .
# the waiting room: only hosts admit and send back (A1, B6); consents and identity first (R7)
admit                Y   Y   .     .    .    .    .    .    .    .
return_to_waiting    Y   Y   .     .    .    .    .    .    .    .
mark_identity_checked Y  Y   .     .    .    .    .    .    Y    .
# everyone may leave for good; the server does it for a phone that closed the page
leave                Y   Y   Y     Y    Y    Y    Y    Y    Y    .
# caucus: only hosts move people, open, close, visit and time rooms (B1, B2, B5)
create_caucus        Y   Y   .     .    .    .    .    .    .    .
close_caucus         Y   Y   .     .    .    .    .    .    .    .
move_to_caucus       Y   Y   .     .    .    .    .    .    .    .
visit_caucus         Y   Y   .     .    .    .    .    .    .    .
return_to_joint      Y   Y   .     .    .    .    .    .    .    .
set_caucus_timer     Y   Y   .     .    .    .    .    .    .    .
extend_caucus_timer  Y   Y   .     .    .    .    .    .    .    .
# a party's side may ask for the mediator (B2); staff and observers have no need to
ask_for_mediator     .   .   Y     Y    Y    Y    .    .    .    .
# the mediator, and only the mediator, calls the duty lawyer in
call_duty_lawyer     Y   .   .     .    .    .    .    .    .    .
# moderation: hosts mute; removing someone and ending are the mediator's or the office's (R10:
# nobody else gains these powers)
mute                 Y   Y   .     .    .    .    .    .    .    .
unmute               Y   Y   .     .    .    .    .    .    .    .
remove               Y   .   .     .    .    .    .    .    .    Y
end_session          Y   .   .     .    .    .    .    .    .    Y
reissue_invitation   Y   .   .     .    .    .    .    .    .    Y
# consent is each person's own, observers included (R7, R8)
record_consent       Y   Y   Y     Y    Y    Y    Y    Y    .    .
# recording is the mediator's switch alone (R8)
ask_recording        Y   .   .     .    .    .    .    .    .    .
start_recording      Y   .   .     .    .    .    .    .    .    .
stop_recording       Y   .   .     .    .    .    .    .    .    .
# the recorder's reports are the server's alone: ready/failed, each segment, each gap
report_recorder      .   .   .     .    .    .    .    .    Y    .
record_segment       .   .   .     .    .    .    .    .    Y    .
record_gap           .   .   .     .    .    .    .    .    Y    .
# after the fact: a staff console plays and holds (the account and grant checked first), the
# retention job deletes (R15, R16)
record_access        .   .   .     .    .    .    .    .    .    Y
record_export        .   .   .     .    .    .    .    .    .    Y
review_recording     .   .   .     .    .    .    .    .    .    .
set_legal_hold       .   .   .     .    .    .    .    .    .    Y
record_deletion      .   .   .     .    .    .    .    .    Y    .
# talk and documents in one's own room; a silent observer neither chats nor shares (R9)
chat                 Y   Y   Y     Y    Y    Y    Y    .    .    .
share_document       Y   Y   Y     Y    Y    Y    Y    .    .    .
# the agreement: the mediator drafts, freezes and seals; each party signs personally and the
# mediator countersigns, counsel never signs for a party (R11); the server records an expired or
# abandoned signing step
draft_agreement      Y   .   .     .    .    .    .    .    .    .
freeze_agreement     Y   .   .     .    .    .    .    .    .    .
sign_agreement       Y   .   Y     .    .    .    .    .    Y    .
seal_agreement       Y   .   .     .    .    .    .    .    .    .
# the archive timestamp job (server only), also after the session ended
renew_agreement      .   .   .     .    .    .    .    .    Y    .
# the duty-lawyer desk's steps of the mediator's call (queued, accepted, released): the server's
desk_event           .   .   .     .    .    .    .    .    Y    .
# the live visit's commands (warn, listen-in, the visit's length) do not exist in mediation
warn                 .   .   .     .    .    .    .    .    .    .
add_observer         .   .   .     .    .    .    .    .    .    .
set_time_limit       .   .   .     .    .    .    .    .    .    .
"""
# fmt: on


def parse(table: str) -> tuple[list[str], dict[str, dict[str, bool]]]:
    lines = [ln for ln in table.strip().splitlines() if ln.strip() and not ln.startswith("#")]
    header = lines[0].split()[1:]
    rows: dict[str, dict[str, bool]] = {}
    for line in lines[1:]:
        command, *cells = line.split()
        assert len(cells) == len(header), f"{command}: {len(cells)} cells"
        assert set(cells) <= {"Y", "."}, command
        assert command not in rows, f"{command} twice"
        rows[command] = {COLUMNS[col]: cell == "Y" for col, cell in zip(header, cells, strict=True)}
    return [COLUMNS[c] for c in header], rows


ROLES, EXPECTED = parse(TABLE)


def test_the_table_covers_every_command_and_every_mediation_role():
    assert set(EXPECTED) == set(COMMAND_TYPES)
    assert set(ROLES) == set(MEDIATION.roles) | {SYSTEM, STAFF}


@pytest.mark.parametrize("command", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_policy_agrees_with_the_hand_written_cell(role, command):
    assert MEDIATION.allows(role, command) is EXPECTED[command][role]


def test_no_role_outside_the_table_is_allowed_anything():
    listed = set(ROLES)
    for command, roles in MEDIATION.permissions.items():
        assert set(roles) <= listed, command
