"""An officer's listen-in on a privileged visit, refused by the plan even when the state is
forced (R2): whatever a bug or a hand put into the session's state — an officer, a supervisor or
an observer connected at the console, recording switched on with the recorder ready — plan()
gives media only between the lawyer and the inmate, and the officers' grid gets no thumbnail; a
staff member or an officer forced into the visit's own room gets nothing either.
(The rooms command is refused in tests/unit/rooms/test_visit_clock.py; the real media engine in
tests/integration/visits/test_privileged_statement.py.)"""

from __future__ import annotations

import pytest

from rooms.plan import RECORDER, plan, thumbnails
from rooms.state import CONSOLE, ParticipantState
from tests.unit.visits.test_privilege import Visit


def forced(role: str, space: str = CONSOLE) -> ParticipantState:
    p = ParticipantState(f"p-f0rced{len(role):02d}", "李警官", role, None)
    p.space, p.connected, p.arrived = space, True, True
    return p


@pytest.mark.parametrize("role", ["officer", "supervisor", "observer", "operator"])
def test_a_forced_listener_at_the_console_gets_nothing(role):
    v = Visit()
    v.live()
    parties = {v.guest, v.inmate}
    assert {e.subscriber for e in plan(v.state)} == parties  # media flows between the two
    spy = forced(role)
    v.state.participants[spy.id] = spy
    v.state.recording, v.state.recorder = True, "ready"
    edges = plan(v.state)
    assert {e.subscriber for e in edges} == parties and {e.publisher for e in edges} == parties
    assert RECORDER not in {e.subscriber for e in edges}
    assert thumbnails(v.state, "grid:off-a", 2.0) == frozenset()


def test_the_same_forcing_in_a_family_visit_does_give_media():
    """The control: the forcing above is strong enough to matter where R2 does not apply."""
    v = Visit("visitation")
    v.live()
    spy = forced("officer")
    v.state.participants[spy.id] = spy
    subscribers = {e.subscriber for e in plan(v.state)}
    assert spy.id in subscribers and RECORDER in subscribers
    assert thumbnails(v.state, "grid:off-a", 2.0)


@pytest.mark.parametrize("role", ["officer", "supervisor", "operator"])
def test_a_forced_listener_in_the_visit_room_gets_nothing(role):
    v = Visit()
    v.live()
    spy = forced(role, "visit")
    v.state.participants[spy.id] = spy
    edges = plan(v.state)
    assert {e.subscriber for e in edges} == {e.publisher for e in edges} == {v.guest, v.inmate}


def test_a_privileged_policy_given_observers_and_recording_stays_privileged():
    """Fail closed: a mistaken edit of the privileged policy (observer roles, recording) does not
    turn the session into an observable one."""
    from dataclasses import replace

    v = Visit()
    v.live()
    loose = replace(
        v.state.policy,
        observer_roles=frozenset({"officer"}),
        observed_spaces=frozenset({"visit"}),
        recording="required",
        recorded_spaces=frozenset({"visit"}),
    )
    v.state.policy = loose
    assert loose.privileged
    spy = forced("officer")
    v.state.participants[spy.id] = spy
    v.state.recording, v.state.recorder = True, "ready"
    edges = plan(v.state)
    assert {e.subscriber for e in edges} == {v.guest, v.inmate}
    assert thumbnails(v.state, "grid:off-a", 2.0) == frozenset()
