"""Properties of ``plan()`` over generated states (hypothesis), and over random command walks.

Generated states are built the way a node would see them (a real ``session.created`` event
folded, then participants placed, connected, muted, consenting at random), including states no
command sequence may produce: the plan's guarantees must not depend on the rules being right.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.events import EventDraft, seal
from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.plan import RECORDER, plan
from rooms.policy import POLICIES
from rooms.service import ParticipantSpec, SessionService
from rooms.state import CONSOLE, SessionState, caucus_space, is_media_space

SPACES = ["waiting", "joint", "visit", "console", "left", "removed"] + [
    caucus_space(n) for n in ("a", "b", "c")
]


@st.composite
def states(draw) -> SessionState:
    kind = draw(st.sampled_from(sorted(POLICIES)))
    policy = POLICIES[kind]
    roles = draw(st.lists(st.sampled_from(sorted(policy.roles)), min_size=1, max_size=9))
    people = [
        {
            "id": f"p-{i:08x}",
            "name": f"n{i}",
            "role": role,
            "side": draw(st.sampled_from([None, "A", "B"])),
        }
        for i, role in enumerate(roles)
    ]
    data = {"kind": kind, "title": "t", "case_number": None, "participants": people}
    state = SessionState(id="s-gen")
    state.apply(seal("s-gen", 1, state.head, EventDraft(1.0, "system", "session.created", data)))
    for p in state.participants.values():
        p.space = draw(st.sampled_from(SPACES))
        p.connected = draw(st.booleans())
        p.muted = draw(st.booleans())
        p.consents["recording"] = draw(st.booleans())
    state.recording = draw(st.booleans())
    return state


def pub_role(state: SessionState, edge) -> str:
    return state.participants[edge.publisher].role


def check_invariants(state: SessionState) -> None:
    edges = plan(state)
    policy = state.policy
    people = state.participants
    for edge in edges:
        pub = people[edge.publisher]
        assert edge.publisher != edge.subscriber
        assert pub.connected and is_media_space(pub.space), "only connected people in rooms publish"
        assert pub.role not in policy.observer_roles, "observers never publish"
        assert not (pub.muted and edge.kind == "audio"), "a muted microphone reaches nobody"
        if edge.subscriber == RECORDER:
            # R14 / R2 / R9: only while recording, never privileged, never a caucus
            assert state.recording and not policy.privileged
            assert pub.space in policy.recorded_spaces
            assert not pub.space.startswith("caucus:")
            continue
        sub = people[edge.subscriber]
        assert sub.connected
        assert sub.space not in ("waiting", "left", "removed"), "the waiting room receives nothing"
        if sub.space != pub.space:
            # the only edge that crosses spaces: a console observer watching an observed room
            assert not policy.privileged, "a privileged session has no observer (R2)"
            assert sub.space == CONSOLE and sub.role in policy.observer_roles
            assert pub.space in policy.observed_spaces
    if policy.privileged:
        assert all(e.subscriber != RECORDER for e in edges)
        assert all(people[e.subscriber].space == people[e.publisher].space for e in edges)
        parties = policy.roles - policy.staff_roles  # R2: no staff in its media, wherever put
        assert all({people[e.subscriber].role, pub_role(state, e)} <= parties for e in edges)
    if not state.recording:
        assert all(e.subscriber != RECORDER for e in edges)
    for host in state.participants.values():
        if host.role in policy.host_roles:
            reached = {
                people[e.subscriber].space
                for e in edges
                if e.publisher == host.id
                and e.kind == "audio"
                and e.subscriber != RECORDER
                and people[e.subscriber].space != CONSOLE
            }
            assert len(reached) <= 1, "the mediator's microphone is live in one space at a time"
    if state.ended:
        assert not edges


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_plan_invariants_on_generated_states(state):
    check_invariants(state)


@settings(max_examples=200, deadline=None)
@given(states())
def test_same_space_pairs_get_both_directions(state):
    """Completeness, not only safety: two connected publishers in one room hear each other."""
    edges = plan(state)
    policy = state.policy
    for a in state.participants.values():
        for b in state.participants.values():
            if (
                a.id != b.id
                and a.connected
                and b.connected
                and a.space == b.space
                and is_media_space(a.space)
                and a.role not in policy.observer_roles
                # a privileged session's staff have no media even if put in its room (R2)
                and not (policy.privileged and {a.role, b.role} & policy.staff_roles)
                and not (
                    state.recording
                    and policy.recording == "consent_gated"
                    and a.space in policy.recorded_spaces
                    and not a.consents.get("recording")
                )
            ):
                assert (a.id, b.id, "video") in edges


# -- random walks through real commands ---------------------------------------------------------
CHOICES = [
    "connect",
    "disconnect",
    "admit",
    "return_to_waiting",
    "move_side",
    "visit",
    "return_to_joint",
    "mute",
    "unmute",
    "consent",
    "start_recording",
    "stop_recording",
    "tick",
    "leave",
    "close_caucus",
    "set_timer",
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(CHOICES), st.integers(0, 5), st.integers(0, 30)),
        min_size=1,
        max_size=60,
    )
)
def test_plan_invariants_hold_after_every_command(steps):
    clock = [1_700_000_000.0]
    store = SqliteLedgerStore(":memory:")
    service = SessionService(store, clock=lambda: clock[0])
    specs = [
        ParticipantSpec("m", "mediator"),
        ParticipantSpec("a", "party", "A"),
        ParticipantSpec("ac", "counsel", "A"),
        ParticipantSpec("b", "party", "B"),
        ParticipantSpec("o", "observer"),
        ParticipantSpec("co", "co_mediator"),
    ]
    state = service.create_session(
        "mediation", actor="system", title="t", case_number=None, participants=specs
    )
    ids = list(state.participants)
    med = ids[0]
    for caucus in ("a", "b"):
        service.execute(state.id, med, decode_command({"type": "create_caucus", "caucus": caucus}))
    for pid in ids:
        service.execute(state.id, "system", decode_command({"type": "connect", "participant": pid}))
    for pid in ids[1:5]:
        for topic in ("online_mediation", "session_rules"):
            raw = {"type": "record_consent", "topic": topic, "given": True}
            service.execute(state.id, pid, decode_command(raw))
        if pid != ids[3]:  # party B stays in the waiting room at first
            service.execute(state.id, med, decode_command({"type": "admit", "participant": pid}))
    for choice, who, secs in steps:
        clock[0] += secs
        pid = ids[who]
        host = ids[5] if who == 5 else med
        raw = {
            "connect": {"type": "connect", "participant": pid},
            "disconnect": {"type": "disconnect", "participant": pid, "reason": "transport_lost"},
            "admit": {"type": "admit", "participant": pid},
            "return_to_waiting": {"type": "return_to_waiting", "participant": pid},
            "move_side": {"type": "move_to_caucus", "caucus": "ab"[who % 2], "side": "AB"[who % 2]},
            "visit": {"type": "visit_caucus", "caucus": "ab"[who % 2]},
            "return_to_joint": {"type": "return_to_joint"},
            "mute": {"type": "mute", "participant": pid},
            "unmute": {"type": "unmute", "participant": pid},
            "consent": {"type": "record_consent", "topic": "recording", "given": secs % 2 == 0},
            "start_recording": {"type": "start_recording"},
            "stop_recording": {"type": "stop_recording"},
            "tick": {"type": "tick"},
            "leave": {"type": "leave", "participant": pid},
            "close_caucus": {"type": "close_caucus", "caucus": "ab"[who % 2]},
            "set_timer": {
                "type": "set_caucus_timer",
                "caucus": "ab"[who % 2],
                "seconds": 10 + secs,
            },
        }[choice]
        actor = {
            "connect": "system",
            "disconnect": "system",
            "tick": "system",
            "leave": "system",
            "consent": pid,
        }.get(choice, host)
        try:
            service.execute(state.id, actor, decode_command(raw))
        except CommandError as exc:
            assert exc.code in ("conflict", "forbidden", "not_found", "ended"), exc
        check_invariants(state)
    events = store.read(state.id)
    assert verify_chain(events) == []
    rebuilt = SessionState.from_events(events)
    assert rebuilt.to_dict() == state.to_dict()
    assert plan(rebuilt) == plan(state)
