"""The desk's SQLite store: points, shifts, tickets, the log; and queue walks across restarts."""

from __future__ import annotations

import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desk import queue as q
from desk.errors import DeskError
from desk.store import DeskStore

T0 = 1_800_000_000.0


def test_points_shifts_and_status(tmp_path):
    store = DeskStore(tmp_path)
    assert stat.S_IMODE((tmp_path / "desk.sqlite3").stat().st_mode) == 0o600
    store.add_point("hall-1", "公共法律服务中心 Hall 1", "1-5 09:00-17:00")
    for bad in [
        ("Hall 1", "x", "1-5 09:00-17:00"),
        ("h", "", "1-5 09:00-17:00"),
        ("h", "x", "mon 9-5"),
        ("h", "x", "1-5 17:00-09:00"),
    ]:
        with pytest.raises(DeskError) as e:
            store.add_point(*bad)
        assert e.value.code == "invalid"
    shift = store.add_shift("li", "hall-1", T0, T0 + 3600)
    assert store.shifts(T0) == [shift]
    assert store.shifts(T0 + 3600) == []
    with pytest.raises(DeskError, match="no service point"):
        store.add_shift("li", "nowhere", T0, T0 + 10)
    with pytest.raises(DeskError, match="ends after it starts"):
        store.add_shift("li", "hall-1", T0, T0)
    store.set_status("li", "available", T0)
    with pytest.raises(DeskError):
        store.set_status("li", "asleep", T0)
    assert store.statuses() == {"li": "available"}


def test_ticket_secret_is_stored_hashed_and_rotates(tmp_path):
    store = DeskStore(tmp_path)
    store.add_point("hall-1", "Hall", "1-7 00:00-24:00")
    t, secret = store.add_ticket(
        now=T0,
        kind="citizen",
        point="hall-1",
        name="张三",
        phone="13800138000",
        topic="debt",
        state="waiting",
    )
    assert store.ticket_by_secret(secret).id == t.id
    assert secret not in (tmp_path / "desk.sqlite3").read_bytes().decode("latin-1")
    new = store.rotate_secret(t.id)
    assert store.ticket_by_secret(secret) is None and store.ticket_by_secret(new).id == t.id
    assert store.ticket_by_secret(None) is None and store.ticket_by_secret("x" * 500) is None
    done = store.update(
        t.id,
        actor="staff:li",
        event="picked",
        now=T0 + 5,
        expect=("waiting",),
        state="serving",
        lawyer="li",
        picked_at=T0 + 5,
    )
    assert done.state == "serving"
    with pytest.raises(DeskError) as e:  # picked up once only
        store.update(
            t.id,
            actor="staff:wu",
            event="picked",
            now=T0 + 6,
            expect=("waiting",),
            state="serving",
            lawyer="wu",
        )
    assert e.value.code == "conflict"
    assert [r[3] for r in store.log_rows(t.id)] == ["queued", "picked"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("join"), st.sampled_from(["citizen", "mediation"])),
            st.tuples(st.just("serve"), st.just(None)),
            st.tuples(st.just("restart"), st.just(None)),
            st.tuples(st.just("wait"), st.integers(1, 300)),
        ),
        max_size=30,
    )
)
def test_queue_walks_fifo_within_priority_nobody_twice_nothing_lost(tmp_path_factory, ops):
    """Callers join, lawyers serve the next, the server restarts (the store is reopened): the
    served order is FIFO within priority, nobody is served twice, no waiting caller is lost."""
    path = tmp_path_factory.mktemp("walk")
    store = DeskStore(path)
    store.add_point("hall", "Hall", "1-7 00:00-24:00")
    now = T0
    joined: list[int] = []
    served: list[int] = []
    for op, arg in ops:
        now += 1
        if op == "join":
            t, _ = store.add_ticket(
                now=now,
                kind=arg,
                point="hall" if arg == "citizen" else None,
                name="x",
                topic="other",
                state="waiting",
            )
            joined.append(t.id)
        elif op == "serve":
            entries = [t.entry() for t in store.live()]
            nxt = q.next_for(entries, ["hall"], now)
            if nxt is not None:
                expected = q.line(entries, ["hall"], now)[0]
                assert nxt.id == expected.id  # everyone is present in this walk: the head
                store.update(
                    nxt.id,
                    actor="staff:li",
                    event="picked",
                    now=now,
                    expect=("waiting",),
                    state="serving",
                    picked_at=now,
                )
                served.append(nxt.id)
        elif op == "restart":
            store.close()
            store = DeskStore(path)
        else:
            now += arg
            for t in store.live():  # the pages keep polling
                if t.state == "waiting":
                    store.touch(t.id, now)
    assert len(served) == len(set(served))
    by_id = {t.id: t for t in store.since(0)}
    # FIFO within priority: among the served, no later joiner of the same kind went first
    for kind in ("citizen", "mediation"):
        order = [i for i in served if by_id[i].kind == kind]
        assert order == sorted(order)
    waiting = {t.id for t in store.live() if t.state == "waiting"}
    assert waiting | set(served) == set(joined)
    store.close()
