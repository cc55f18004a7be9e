"""The permission table walked exhaustively: every kind x every role x every command.

For each combination a fresh, fully populated session is prepared so that the command is valid
for *some* role; then the role under test issues it. Allowed roles succeed; every other role
gets ``forbidden`` and the ledger does not move. This proves the service enforces the policy; that
the mediation policy itself is right is checked against a table written by hand in
``test_permissions_table.py``.
"""

from __future__ import annotations

import pytest

from rooms.commands import COMMAND_TYPES, decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.policy import POLICIES, STAFF, SYSTEM
from rooms.service import ParticipantSpec, SessionService

CAST = {
    "mediation": [
        ("mediator", None),
        ("co_mediator", None),
        ("party", "A"),
        ("counsel", "A"),
        ("support", "A"),
        ("interpreter", "A"),
        ("party", "B"),
        ("duty_lawyer", None),
        ("observer", None),
    ],
    "visitation": [
        ("operator", None),
        ("officer", None),
        ("supervisor", None),
        ("visitor", None),
        ("visitor", None),
        ("inmate", None),
    ],
    "privileged": [("operator", None), ("supervisor", None), ("lawyer", None), ("inmate", None)],
    "consultation": [
        ("duty_lawyer", None),
        ("citizen", None),
        ("assistant", None),
        ("interpreter", None),  # on request (docs/desk.md)
    ],
}
TARGET_INDEX = {"mediation": 6, "visitation": 4, "privileged": 3, "consultation": 1}
ALT_TARGET_INDEX = {"mediation": 2, "visitation": 3, "privileged": 2, "consultation": 2}
STAFF_ACTOR = "staff:admin"


class World:
    """One populated session: everyone connected, consented, checked and admitted."""

    def __init__(self, kind: str, actor_index: int | None = None) -> None:
        self.store = SqliteLedgerStore(":memory:")
        self.service = SessionService(self.store, clock=lambda: 1_700_000_000.0)
        self.policy = POLICIES[kind]
        specs = [
            ParticipantSpec(f"{role} {i}", role, side) for i, (role, side) in enumerate(CAST[kind])
        ]
        self.state = self.service.create_session(
            kind, actor=STAFF_ACTOR, title="t", case_number=None, participants=specs
        )
        self.ids = list(self.state.participants)
        index = TARGET_INDEX[kind]
        self.target = self.ids[ALT_TARGET_INDEX[kind] if actor_index == index else index]
        for pid in self.ids:
            self.run("system", type="connect", participant=pid)
        for pid in self.ids:
            if self.policy.allows(self.role(pid), "record_consent"):
                topics = ["online_mediation", "session_rules"]
                if self.policy.recording != "forbidden":
                    topics.append("recording")
                for topic in topics:
                    self.run(pid, type="record_consent", topic=topic, given=True)
            if self.role(pid) in self.policy.admission_identity:
                self.as_allowed("mark_identity_checked", participant=pid)
        if self.policy.recording == "required":  # R1: no visit before the recorder is ready
            self.run("system", type="report_recorder", status="ready")
            self.run("system", type="start_recording")
        for pid in self.ids:
            if self.state.participants[pid].space == "waiting":
                self.as_allowed("admit", participant=pid)
        if self.policy.caucuses:
            self.as_allowed("create_caucus", caucus="c1")

    def role(self, actor: str) -> str:
        if actor == SYSTEM:
            return SYSTEM
        if actor.startswith("staff:"):
            return STAFF
        return self.state.participants[actor].role

    def run(self, actor: str, **raw):
        return self.service.execute(self.state.id, actor, decode_command(raw))

    def allowed_actor(self, name: str) -> str:
        for actor in [*self.ids, SYSTEM, STAFF_ACTOR]:
            if self.policy.allows(self.role(actor), name) and actor != self.target:
                return actor
        raise AssertionError(f"nobody may {name}")

    def as_allowed(self, name: str, **raw):
        return self.run(self.allowed_actor(name), type=name, **raw)


def prepare(world: World, name: str, actor: str) -> dict:
    """Put the session in a state where ``name`` is valid, and return the command to send."""
    target = world.target
    allowed = world.policy.allows(world.role(actor), name)

    def setup(step: str, **raw) -> None:
        # For an allowed actor the setup must work; for a forbidden one it is best effort (the
        # permission check comes before any state check).
        try:
            world.as_allowed(step, **raw)
        except (CommandError, AssertionError):
            if allowed:
                raise

    if name == "connect":
        world.run("system", type="disconnect", participant=target, reason="transport_lost")
        return {"participant": target}
    if name == "disconnect":
        return {"participant": target, "reason": "transport_lost"}
    if name == "admit":
        setup("return_to_waiting", participant=target)
        return {"participant": target}
    if name == "mark_identity_checked":
        unchecked = [
            pid
            for pid, p in world.state.participants.items()
            if not p.identity_checked and pid != actor
        ]
        return {
            "participant": unchecked[0],
            "method": "one_time_code" if actor == SYSTEM else "video",
        }
    if name in ("return_to_waiting", "mute", "remove", "reissue_invitation"):
        return {"participant": target}
    if name == "unmute":
        setup("mute", participant=target)
        return {"participant": target}
    if name == "leave":
        return {"participant": target} if actor == SYSTEM else {}
    if name == "create_caucus":
        return {"caucus": "c2", "seconds": 300}
    if name in ("close_caucus", "visit_caucus"):
        return {"caucus": "c1"}
    if name == "move_to_caucus":
        return {"caucus": "c1", "participants": [target]}
    if name == "return_to_joint":
        if allowed:
            world.run(actor, type="visit_caucus", caucus="c1")
        return {}
    if name == "set_caucus_timer":
        return {"caucus": "c1", "seconds": 120}
    if name == "extend_caucus_timer":
        setup("set_caucus_timer", caucus="c1", seconds=120)
        return {"caucus": "c1", "seconds": 60}
    if name == "ask_for_mediator":
        if allowed:
            setup("return_to_waiting", participant=actor)
        return {}
    if name == "call_duty_lawyer":
        return {"name": "Lawyer on duty", "space": "joint"}
    if name == "record_consent":
        return {"topic": "session_rules", "given": False}
    if name == "stop_recording":
        setup("start_recording")
        return {}
    if name == "ask_recording":  # everyone consented in setup; recording is off
        return {"action": "ask"}
    if name == "chat":
        return {"text": "hello"}
    if name in ("freeze_agreement", "sign_agreement", "seal_agreement"):
        signers = [
            pid for pid, p in world.state.participants.items() if p.role in ("party", "mediator")
        ]
        freeze = {
            "signers": signers or [target],
            "events": [
                {"type": "agreement.frozen", "data": {"version": 1, "fingerprint": "f" * 64}},
                {"type": "agreement.certified", "data": {"version": 1, "pdf_sha256": "a" * 64}},
            ],
        }
        if name == "freeze_agreement":
            setup("draft_agreement", case_type="debt", language="en", terms=["Pay 100."])
            return freeze
        setup("draft_agreement", case_type="debt", language="en", terms=["Pay 100."])
        setup("freeze_agreement", **freeze)
        if name == "sign_agreement":
            kind = "signature.aborted" if actor == SYSTEM else "cert.issued"
            return (
                {"events": [{"type": kind, "data": {"participant_id": target}}]}
                if actor == SYSTEM
                else {"events": [{"type": kind, "data": {"participant_id": actor}}]}
            )
        for pid in signers:  # seal: every signer has signed first
            world.run(
                pid,
                type="sign_agreement",
                events=[
                    {
                        "type": "signature.embedded",
                        "data": {"participant_id": pid, "pdf_sha256": "b" * 64},
                    }
                ],
            ) if allowed else None
        return {"events": [{"type": "agreement.sealed", "data": {"pdf_sha256": "c" * 64}}]}
    if name == "draft_agreement":
        return {
            "case_type": "debt",
            "language": "zh-CN",
            "terms": ["甲方于2026年12月31日前支付1000元。"],
        }
    if name == "share_document":
        import secrets

        return {
            "document": "d-" + secrets.token_hex(8),
            "name": "agreement-draft.pdf",
            "mime": "application/pdf",
            "size": 1234,
            "sha256": "ab" * 32,
        }
    if name == "start_recording" and world.state.recording:  # required: on since setup
        world.run("system", type="report_recorder", status="failed", reason="test")
        world.run("system", type="report_recorder", status="ready")
        return {}
    if name == "report_recorder":
        return {"status": "failed", "reason": "disk full"}
    if name == "record_segment":
        return {
            "participant": target,
            "space": world.policy.main_space,
            "kinds": ["audio", "video"],
            "index": 0,
            "file": "p-00000000-joint-000000.seg",
            "key_id": "0" * 16,
            "media_start": 0.0,
            "media_end": 10.0,
            "wall_start": 1_700_000_000.0,
            "wall_end": 1_700_000_010.0,
            "video_frames": 150,
            "audio_frames": 500,
            "bytes": 1000,
            "sha256": "a" * 64,
            "plain_sha256": "b" * 64,
        }
    if name == "record_gap":
        return {"reason": "queue_full", "wall_start": 1.0, "wall_end": 2.0, "frames": 3}
    if name == "renew_agreement":  # the archive job, on a sealed agreement
        if allowed:
            sealer = world.allowed_actor("seal_agreement")
            world.run(sealer, type="seal_agreement", **prepare(world, "seal_agreement", sealer))
        renewed = {"previous_pdf_sha256": "c" * 64, "pdf_sha256": "d" * 64}
        return {"events": [{"type": "agreement.renewed", "data": renewed}]}
    if name in ("record_access", "record_deletion", "record_export", "review_recording"):
        if allowed:  # a recorded segment to play, export, review or delete
            setup("record_segment", **prepare(world, "record_segment", SYSTEM))
        if name == "record_access":
            return {"action": "play", "files": ["a.seg"], "reason": "appeal", "grant": "admin"}
        if name == "record_export":
            return {
                "file": "export-000000.exp",
                "sources": ["a.seg"],
                "key_id": "0" * 16,
                "bytes": 10,
                "sha256": "a" * 64,
                "plain_sha256": "b" * 64,
                "width": 640,
                "height": 240,
                "seconds": 10.0,
                "reason": "appeal",
                "grant": "admin",
            }
        if name == "review_recording":
            return {"outcome": "no_concern", "note": "watched in full", "grant": "reviewer"}
        return {"files": ["a.seg"], "reason": "retention", "retention_days": 365}
    if name == "set_legal_hold":
        return {"hold": True, "reason": "court order 12"}
    if name in ("tick", "end_session", "start_recording"):
        return {}
    if name == "warn":  # the live visit (docs/visitation.md)
        return {"reason": "language"}
    if name == "add_observer":
        return {"name": "Officer on watch", "role": "officer"}
    if name == "set_time_limit":
        return {"seconds": 1200}
    if name == "desk_event":  # the duty-lawyer desk's step (docs/desk.md)
        return {"step": "queued", "ticket": 1, "detail": {"point": "hall-1"}}
    raise AssertionError(f"no preparation for {name}")


def actors(kind: str) -> list[tuple[str, int | str]]:
    """(role, how to find the actor): a cast index, or a pseudo-role."""
    seen, out = set(), []
    for i, (role, _) in enumerate(CAST[kind]):
        if role not in seen:
            seen.add(role)
            out.append((role, i))
    return [*out, (SYSTEM, SYSTEM), (STAFF, STAFF_ACTOR)]


CASES = [
    pytest.param(kind, role, who, name, id=f"{kind}-{role}-{name}")
    for kind in POLICIES
    for role, who in actors(kind)
    for name in sorted(COMMAND_TYPES)
]


def test_every_role_of_every_kind_is_walked():
    for kind, policy in POLICIES.items():
        walked = {role for role, _ in actors(kind)}
        assert walked == policy.roles | {SYSTEM, STAFF}
        assert set(policy.permissions) == set(COMMAND_TYPES)


@pytest.mark.parametrize("kind,role,who,name", CASES)
def test_permission(kind, role, who, name):
    world = World(kind, who if isinstance(who, int) else None)
    actor = world.ids[who] if isinstance(who, int) else who
    raw = prepare(world, name, actor)
    before = world.store.read(world.state.id)
    allowed = world.policy.allows(role, name)
    if allowed:
        events = world.run(actor, type=name, **raw)
        after = world.store.read(world.state.id)
        assert after[: len(before)] == before
        assert [e.seq for e in after[len(before) :]] == [e.seq for e in events]
        assert name == "tick" or events, f"{name} by {role} produced no event"
    else:
        with pytest.raises(CommandError) as err:
            world.run(actor, type=name, **raw)
        assert err.value.code == "forbidden", err.value.message
        assert world.store.read(world.state.id) == before
        assert world.state.seq == before[-1].seq
