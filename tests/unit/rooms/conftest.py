"""Shared fixtures: a real SQLite ledger in a temporary directory and a controllable clock."""

from __future__ import annotations

import pytest

from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path):
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite3")
    yield store
    store.close()


@pytest.fixture
def service(store, clock) -> SessionService:
    return SessionService(store, clock=clock)


MEDIATION_PEOPLE = [
    ParticipantSpec("Mediator Wang", "mediator"),
    ParticipantSpec("Zhang San", "party", "A"),
    ParticipantSpec("Counsel Zhao", "counsel", "A"),
    ParticipantSpec("Li Si", "party", "B"),
]


@pytest.fixture
def mediation(service):
    """A mediation session and a name -> participant id map."""
    state = service.create_session(
        "mediation",
        actor="staff:wang",
        title="Rent dispute",
        case_number="C-1",
        participants=list(MEDIATION_PEOPLE),
    )
    ids = {p.name: p.id for p in state.participants.values()}
    return state, ids
