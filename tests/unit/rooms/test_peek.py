"""``SessionService.peek``: the state of a session this service does not hold, read from the
ledger another service appends to (a cluster's other node), folded incrementally."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import SessionService
from tests.unit.rooms.conftest import MEDIATION_PEOPLE


class CountingStore:
    """The real store, with the ``after_seq`` of every read and the events each returned."""

    def __init__(self, store) -> None:
        self.store = store
        self.reads: list[tuple[int, int]] = []

    def read(self, session_id: str, after_seq: int = 0):
        events = self.store.read(session_id, after_seq)
        self.reads.append((after_seq, len(events)))
        return events

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_peek_folds_only_the_new_events(store, clock):
    owner = SessionService(store, clock=clock)
    counting = CountingStore(store)
    reader = SessionService(counting, clock=clock)
    state = owner.create_session(
        "mediation",
        actor="staff:wang",
        title="t",
        case_number=None,
        participants=list(MEDIATION_PEOPLE),
    )
    first = reader.peek(state.id)
    assert first.seq == state.seq and counting.reads == [(0, state.seq)]
    assert reader.sessions() == []  # never served here
    with pytest.raises(CommandError):
        reader.state(state.id)

    ids = {p.name: p.id for p in state.participants.values()}
    before = state.seq
    for who in ("Mediator Wang", "Li Si"):
        connect = decode_command({"type": "connect", "participant": ids[who]})
        owner.execute(state.id, "system", connect)
    again = reader.peek(state.id)
    assert again is first  # the same mirror, folded forward
    assert counting.reads[-1] == (before, state.seq - before) and state.seq > before
    assert again.seq == state.seq and again.participants[ids["Li Si"]].connected
    assert again.head == state.head
    assert reader.peek(state.id).seq == state.seq and counting.reads[-1] == (state.seq, 0)


def test_peek_of_a_held_session_is_the_live_state(service, mediation):
    state, _ = mediation
    assert service.peek(state.id) is state


@pytest.mark.parametrize("bad", ["s-nothere", "", None, 7, "x" * 65])
def test_peek_unknown_or_malformed_is_not_found(service, bad):
    with pytest.raises(CommandError) as e:
        service.peek(bad)
    assert e.value.code == "not_found"


def test_a_sessions_ledger_is_read_wherever_it_is_served(store, clock):
    """``events``: the whole ledger of a session another service serves (a privileged visit's
    statement, an evidence bundle), the same as its owner reads; unknown ids are not_found."""
    owner = SessionService(store, clock=clock)
    reader = SessionService(store, clock=clock)
    state = owner.create_session(
        "mediation",
        actor="staff:wang",
        title="t",
        case_number=None,
        participants=list(MEDIATION_PEOPLE),
    )
    assert reader.events(state.id) == owner.events(state.id) and len(reader.events(state.id)) >= 1
    with pytest.raises(CommandError) as refused:
        reader.events("s-nobody")
    assert refused.value.code == "not_found"
    with pytest.raises(CommandError):
        reader.state(state.id)  # read, never served here
