"""The live visit's steps (signaling/visits_live.py) with a simulated clock, against the real
visitation store and a real session service (no network): when the session opens, that nobody is
admitted before the check-in or without the recorder (R6, R1), that the visit's length comes from
the booking, what ending does to the booking, and that a visit that never went live leaves its
booking approved for the no-show."""

from __future__ import annotations

import datetime as dt

import pytest

from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore
from rooms.service import SessionService
from signaling.tokens import TokenSigner
from signaling.visits_console import VisitsConsole
from signaling.visits_live import OPEN_MINUTES
from tests.support.province import NOW, build
from visits.booking import Rules
from visits.checkin import CheckIns
from visits.reservations import Request

START = dt.datetime(2030, 1, 8, 9, 0)  # a Tuesday, inside the province's opening hours
EPOCH = 1_900_000_000.0


class World:
    def __init__(self, tmp_path) -> None:
        self.store, self.d, _, self.ids = build(tmp_path)
        self.wall = EPOCH
        self.service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: self.wall)
        self.console = VisitsConsole(
            self.store,
            rules=Rules(),
            notifier=None,
            timezone="Asia/Shanghai",
            service=self.service,
            signer=TokenSigner(b"k" * 32),
        )
        self.res, self.live = self.console.res, self.console.live

    def book(self, start=START, minutes=15, visitors=("a1v0",)) -> int:
        bid = self.res.request(
            "staff:op",
            Request(
                self.ids["a1"], "bx-1", "pa-1", start, minutes, tuple(self.ids[v] for v in visitors)
            ),
            NOW,
        )
        self.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
        return bid

    def at(self, when: dt.datetime) -> None:
        """Move both clocks (the province's wall clock and the ledger's) and take one step."""
        self.wall = EPOCH + (when - START).total_seconds()
        self.live.step(when)

    def run(self, session, actor, **raw):
        return self.service.execute(session, actor, decode_command(raw))


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.store.close()


def test_a_visit_opens_goes_live_only_when_checked_in_and_recorded_and_completes(world):
    w = world
    bid = w.book()
    w.at(START - dt.timedelta(minutes=OPEN_MINUTES + 1))
    assert w.live.row(booking=bid) is None  # too early: no session yet
    w.at(START - dt.timedelta(minutes=OPEN_MINUTES))
    booking, session, kind, family, inmate, ended = w.live.row(booking=bid)
    state = w.service.state(session)
    assert (kind, state.kind, state.time_limit) == ("visitation", "visitation", 15 * 60.0)
    assert {p.role for p in state.participants.values()} == {"visitor", "inmate"}
    terminal = w.d.terminal("bx-1")
    place = w.live.for_terminal(terminal, w.res.get(bid))
    assert place["role"] == "visitor" and place["session"] == session and place["token"]

    for pid in (family, inmate):
        w.run(session, "system", type="connect", participant=pid)
    w.run(session, family, type="record_consent", topic="session_rules", given=True)
    w.at(START + dt.timedelta(minutes=1))
    assert all(p.space == "waiting" for p in state.participants.values())  # R6: not checked in

    CheckIns(w.store, w.res).check_in(
        "staff:op",
        bid,
        w.ids["a1v0"],
        "110101197001010297",
        method="id_card",
        pledge=True,
        now=START,
    )
    w.at(START + dt.timedelta(minutes=1))
    assert state.participants[family].identity_checked
    assert all(p.space == "waiting" for p in state.participants.values())  # R1: no recorder
    w.run(session, "system", type="report_recorder", status="ready")
    w.at(START + dt.timedelta(minutes=1, seconds=1))
    assert state.recording and all(p.space == "visit" for p in state.participants.values())
    assert state.clock_since is not None

    w.run(session, "staff:off-a", type="end_session", reason="terminated:security")
    w.at(START + dt.timedelta(minutes=2))
    assert w.live.row(booking=bid)[5] == 1 and w.live.open_rows() == []
    b = w.res.get(bid)
    assert (b.status, b.reason_code) == ("completed", "terminated:security")
    assert w.live.for_terminal(terminal, b) is None


def test_a_visit_that_never_went_live_stays_approved_for_the_no_show(world):
    w = world
    bid = w.book()
    w.at(START - dt.timedelta(minutes=5))
    session = w.live.row(booking=bid)[1]
    w.at(START + dt.timedelta(minutes=14))
    assert not w.service.state(session).ended
    w.at(START + dt.timedelta(minutes=15))  # the booked end, nobody came
    w.at(START + dt.timedelta(minutes=15, seconds=1))
    state = w.service.state(session)
    assert state.ended and state.ended_reason == "no_visit"
    assert w.res.get(bid).status == "approved" and w.live.open_rows() == []
    w.res.no_show("staff:op", bid, START + dt.timedelta(minutes=20))
    assert w.res.get(bid).status == "no_show"


def test_a_privileged_visit_opens_without_a_recorder_and_goes_live(world):
    w = world
    from visits.directory import insert_visitor

    w.ids["law"] = w.d.add(
        insert_visitor,
        {
            "facility": "prison-a",
            "inmate_number": "A-001",
            "name": "律师",
            "relationship": "lawyer",
            "id_number": "LAW00000001",
            "evidence": "L-1",
            "approved_by": "off-a",
            "reason": "engaged",
            "expires": "2031-12-31",
        },
    )
    bid = w.res.request(
        "staff:op",
        Request(w.ids["a1"], "bx-1", "pa-1", START, 15, (w.ids["law"],), kind="privileged"),
        NOW,
    )
    w.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    w.at(START - dt.timedelta(minutes=1))
    _, session, kind, lawyer, inmate, _ = w.live.row(booking=bid)
    state = w.service.state(session)
    assert kind == "privileged" and state.policy.privileged
    for pid in (lawyer, inmate):
        w.run(session, "system", type="connect", participant=pid)
    CheckIns(w.store, w.res).check_in(
        "staff:op", bid, w.ids["law"], "LAW00000001", method="id_card", pledge=True, now=START
    )
    w.at(START)
    w.at(START + dt.timedelta(seconds=1))
    assert all(p.space == "visit" for p in state.participants.values())
    assert not state.recording and state.recorder == "none"  # never a recorder (R2)
