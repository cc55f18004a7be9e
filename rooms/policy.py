"""Policies: what each kind of session allows, as pure data.

A ``Policy`` answers, without looking at any state: which roles exist, which role may issue which
command, where each role lands on first connect, who is staff, who observes what, whether
recording is required / consent-gated / forbidden and in which spaces, and the limits. The four
kinds (docs/architecture.md) are the four instances in ``POLICIES``; the permission table is walked
exhaustively by the tests. Two pseudo-roles exist for actors that are not participants:
``system`` (the server itself: media up or down, the clock) and ``staff`` (a logged-in staff user
acting from a console, ``"staff:<username>"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from rooms.commands import COMMAND_TYPES

SYSTEM = "system"
STAFF = "staff"
PSEUDO_ROLES = frozenset({SYSTEM, STAFF})

Recording = Literal["required", "consent_gated", "forbidden"]
# While consent-gated recording runs and someone in a recorded room has not consented: "hold"
# keeps that person silent and unseen (R8), "pause" stops the recording for everyone instead.
LateJoiner = Literal["hold", "pause"]


@dataclass(frozen=True)
class Policy:
    kind: str
    roles: frozenset[str]
    permissions: Mapping[str, frozenset[str]]  # command type -> roles (incl. pseudo-roles)
    landing: Mapping[str, str]  # role -> space on first connect
    main_space: str  # where "admit" leads
    host_roles: frozenset[str] = frozenset()  # losing all of them triggers the safety hold
    staff_roles: frozenset[str] = frozenset()  # cannot be moved or sent back by others
    observer_roles: frozenset[str] = frozenset()  # never publish; console observers see...
    observed_spaces: frozenset[str] = frozenset()  # ...these spaces
    recording: Recording = "forbidden"
    recorded_spaces: frozenset[str] = frozenset()
    late_joiner: LateJoiner = "hold"
    # Someone who had consented withdraws while consent-gated recording runs: "pause" stops the
    # recording for everyone until they consent again or leave the recorded room (the mediator
    # sees who withdrew); "hold" treats them as a late joiner who has not consented.
    withdrawal: LateJoiner = "pause"
    caucuses: bool = False
    admission_consents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    admission_identity: frozenset[str] = frozenset()  # roles checked before admission (R6)
    max_participants: int = 16
    role_limits: Mapping[str, int] = field(default_factory=dict)
    host_grace_seconds: float | None = None  # None: no safety hold for this kind
    caucus_warnings: tuple[int, ...] = (60, 10)
    time_limit_seconds: int | None = None  # the longest visit; a visit's own is set_time_limit
    # R17, the session clock: it runs while someone of each of these roles is connected in the
    # main space, warns at these remaining seconds, ends the session at zero; a pause (an
    # outage, a recorder failure) longer than the grace ends it too. Empty: no clock.
    clock_roles: frozenset[str] = frozenset()
    time_warnings: tuple[int, ...] = (300, 60)
    outage_grace_seconds: float = 300.0

    @property
    def privileged(self) -> bool:
        """No recorder and no observer may ever be attached (R2). The kind decides first: a
        privileged policy that someone gave observers or recording stays privileged (fail
        closed), it does not silently become an observable one."""
        return self.kind == "privileged" or (
            self.recording == "forbidden" and not self.observer_roles
        )

    def allows(self, role: str, command_type: str) -> bool:
        return role in self.permissions.get(command_type, frozenset())

    def consents_for(self, role: str) -> dict[str, list[str]]:
        """What a person of ``role`` is asked to agree to on joining: ``required`` before
        admission; ``optional`` is recording where it needs consent. Everyone who can be
        recorded is asked, the mediator included (R8: recording starts only with the host's
        own recorded consent); observers never publish, so they are not."""
        gated = self.recording == "consent_gated" and role not in self.observer_roles
        return {
            "required": list(self.admission_consents.get(role, ())),
            "optional": ["recording"] if gated else [],
        }


def _table(**rows: set[str] | frozenset[str]) -> Mapping[str, frozenset[str]]:
    unknown = set(rows) - set(COMMAND_TYPES)
    if unknown:
        raise ValueError(f"permission rows for unknown commands: {sorted(unknown)}")
    table = {name: frozenset(rows.get(name, ())) for name in COMMAND_TYPES}
    return MappingProxyType(table)


_SYSTEM_ONLY = {
    "connect": {SYSTEM},
    "disconnect": {SYSTEM},
    "tick": {SYSTEM},
}
# What the recorder reports (recording/): never a client, never a privileged session (R2).
_RECORDER = {
    "report_recorder": {SYSTEM},
    "record_segment": {SYSTEM},
    "record_gap": {SYSTEM},
    # after the fact (recording/review.py, recording/retention.py check the account and grant)
    "record_access": {STAFF},
    "record_export": {STAFF},
    "set_legal_hold": {STAFF},
    "record_deletion": {SYSTEM},
}

# -- mediation ----------------------------------------------------------------------------------
_M_HOSTS = {"mediator", "co_mediator"}
_M_ROLES = _M_HOSTS | {"party", "counsel", "support", "interpreter", "duty_lawyer", "observer"}
_M_CAUCUS_CMDS = (
    "create_caucus",
    "close_caucus",
    "move_to_caucus",
    "visit_caucus",
    "return_to_joint",
    "set_caucus_timer",
    "extend_caucus_timer",
)
MEDIATION = Policy(
    kind="mediation",
    roles=frozenset(_M_ROLES),
    permissions=_table(
        **_SYSTEM_ONLY,
        **_RECORDER,
        admit=_M_HOSTS,
        return_to_waiting=_M_HOSTS,
        leave=_M_ROLES | {SYSTEM},
        **{name: _M_HOSTS for name in _M_CAUCUS_CMDS},
        ask_for_mediator={"party", "counsel", "support", "interpreter"},
        call_duty_lawyer={"mediator"},
        desk_event={SYSTEM},  # the desk's steps of the mediator's call (docs/desk.md)
        mute=_M_HOSTS,
        unmute=_M_HOSTS,
        remove={"mediator", STAFF},
        end_session={"mediator", STAFF},
        reissue_invitation={"mediator", STAFF},
        mark_identity_checked=_M_HOSTS | {SYSTEM},  # system: a one-time code was verified
        record_consent=_M_ROLES,
        ask_recording={"mediator"},  # who may start asks everyone present first (R8)
        start_recording={"mediator"},
        stop_recording={"mediator"},
        chat=_M_ROLES - {"observer"},
        share_document=_M_ROLES - {"observer"},
        draft_agreement={"mediator"},
        freeze_agreement={"mediator"},
        sign_agreement={"party", "mediator", SYSTEM},  # system: expired or abandoned steps
        seal_agreement={"mediator"},
        renew_agreement={SYSTEM},  # the archive timestamp job, also years after the end
    ),
    landing={r: ("joint" if r in _M_HOSTS else "waiting") for r in _M_ROLES},
    main_space="joint",
    host_roles=frozenset(_M_HOSTS),
    staff_roles=frozenset(_M_HOSTS | {"duty_lawyer"}),
    observer_roles=frozenset({"observer"}),
    recording="consent_gated",
    recorded_spaces=frozenset({"joint"}),
    caucuses=True,
    admission_consents={
        "party": ("online_mediation", "session_rules"),
        "counsel": ("session_rules",),
        "support": ("session_rules",),
        "interpreter": ("session_rules",),
        "observer": ("session_rules",),
    },
    max_participants=16,
    role_limits={"mediator": 1},
    host_grace_seconds=10.0,
)

# -- visitation (R1, R4, R5, R6) -----------------------------------------------------------------
_V_STAFF = {"operator", "officer", "supervisor"}
_V_ROLES = _V_STAFF | {"visitor", "inmate"}
VISITATION = Policy(
    kind="visitation",
    roles=frozenset(_V_ROLES),
    permissions=_table(
        **_SYSTEM_ONLY,
        **_RECORDER,
        admit={"operator", SYSTEM},  # system: both terminals in, checked in, recorder on
        return_to_waiting={"operator"},
        leave=_V_ROLES | {SYSTEM},
        mute=_V_STAFF | {STAFF},  # the officer console mutes one side (R4)
        unmute=_V_STAFF | {STAFF},
        remove=_V_STAFF,
        end_session=_V_STAFF | {STAFF, SYSTEM},  # system: the visit never started
        reissue_invitation={"operator", STAFF},
        mark_identity_checked={"operator", SYSTEM},  # system: the counter's check-in (R6)
        warn=_V_STAFF | {STAFF},  # R4: officers, and the bureau's operator by policy
        add_observer={STAFF},  # listen-in from the officer console
        set_time_limit={SYSTEM},
        record_consent={"visitor", "inmate"},
        start_recording={"operator", SYSTEM},
        chat={"visitor", "inmate"},  # staff watch from the console; they do not chat in
        review_recording={STAFF},  # R3: a visit not watched live is reviewed (review_queue.py)
    ),
    landing={r: ("console" if r in _V_STAFF else "waiting") for r in _V_ROLES},
    main_space="visit",
    staff_roles=frozenset(_V_STAFF),
    observer_roles=frozenset({"officer", "supervisor"}),
    observed_spaces=frozenset({"visit"}),
    recording="required",
    recorded_spaces=frozenset({"visit"}),
    admission_consents={"visitor": ("session_rules",)},
    admission_identity=frozenset({"visitor"}),
    max_participants=8,
    role_limits={"visitor": 3, "inmate": 1},
    time_limit_seconds=30 * 60,
    clock_roles=frozenset({"visitor", "inmate"}),
)

# -- privileged lawyer-detainee visit (R2) -------------------------------------------------------
_P_STAFF = {"operator", "supervisor"}
_P_ROLES = _P_STAFF | {"lawyer", "inmate"}
PRIVILEGED = Policy(
    kind="privileged",
    roles=frozenset(_P_ROLES),
    permissions=_table(
        **_SYSTEM_ONLY,
        admit={"operator", SYSTEM},
        return_to_waiting={"operator"},
        leave=_P_ROLES | {SYSTEM},
        remove={"supervisor"},
        end_session={"supervisor", STAFF, SYSTEM},
        reissue_invitation={"operator", STAFF},
        mark_identity_checked={"operator", SYSTEM},
        set_time_limit={SYSTEM},  # nobody warns or listens in a privileged visit (R2)
        record_consent={"lawyer", "inmate"},
        chat={"lawyer", "inmate"},
        share_document={"lawyer"},
    ),
    landing={r: ("console" if r in _P_STAFF else "waiting") for r in _P_ROLES},
    main_space="visit",
    staff_roles=frozenset(_P_STAFF),
    recording="forbidden",
    admission_identity=frozenset({"lawyer"}),
    max_participants=6,
    role_limits={"lawyer": 2, "inmate": 1},
    time_limit_seconds=60 * 60,
    clock_roles=frozenset({"lawyer", "inmate"}),
)

# -- consultation (citizen and duty lawyer) ------------------------------------------------------
_C_ROLES = {"duty_lawyer", "citizen", "assistant", "interpreter"}  # the interpreter on request
CONSULTATION = Policy(
    kind="consultation",
    roles=frozenset(_C_ROLES),
    permissions=_table(
        **_SYSTEM_ONLY,
        **_RECORDER,
        admit={"duty_lawyer"},
        return_to_waiting={"duty_lawyer"},
        leave=_C_ROLES | {SYSTEM},
        ask_for_mediator={"citizen", "assistant"},
        mute={"duty_lawyer"},
        unmute={"duty_lawyer"},
        remove={"duty_lawyer", STAFF},
        end_session={"duty_lawyer", STAFF},
        reissue_invitation={"duty_lawyer", STAFF},
        mark_identity_checked={"duty_lawyer"},
        record_consent=_C_ROLES,
        ask_recording={"duty_lawyer"},
        start_recording={"duty_lawyer"},
        stop_recording={"duty_lawyer"},
        desk_event={SYSTEM},  # queued, accepted, transferred, summary, rating (docs/desk.md)
        chat=_C_ROLES,
        share_document=_C_ROLES,
    ),
    landing={
        "duty_lawyer": "joint",
        "citizen": "waiting",
        "assistant": "waiting",
        "interpreter": "waiting",  # the desk admits them in the lawyer's name (docs/desk.md)
    },
    main_space="joint",
    host_roles=frozenset({"duty_lawyer"}),
    staff_roles=frozenset({"duty_lawyer"}),  # the assistant sits with the citizen
    recording="consent_gated",
    recorded_spaces=frozenset({"joint"}),
    max_participants=4,
    role_limits={"duty_lawyer": 1, "citizen": 1, "interpreter": 1},  # one to one, +1 interpreter
    host_grace_seconds=10.0,
)

POLICIES: Mapping[str, Policy] = MappingProxyType(
    {p.kind: p for p in (MEDIATION, VISITATION, PRIVILEGED, CONSULTATION)}
)


def policy_for(kind: str) -> Policy:
    return POLICIES[kind]
