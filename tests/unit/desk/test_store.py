"""The desk's stores: points, shifts, tickets, the log; and queue walks across restarts. Every
case runs on both: SQLite in the data directory (``DeskStore``) and a real redis-server
(``cluster.desk.RedisDeskStore``, as when clustered)."""

from __future__ import annotations

import hashlib
import secrets
import stat
import threading

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.desk import RedisDeskStore
from desk import queue as q
from desk.errors import DeskError
from desk.store import DeskStore
from tests.support.procs import free_port
from tests.support.redisd import redis_server  # noqa: F401 - fixture

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "redis"])
def opener(request):
    """``opener(path)`` opens the store of that data directory (SQLite) or of that key prefix
    on the test's redis-server; opening it again is a restart."""
    made = []

    def open_store(path):
        if request.param == "sqlite":
            store = DeskStore(path)
        else:
            url = request.getfixturevalue("redis_server").url
            prefix = f"t{hashlib.sha256(str(path).encode()).hexdigest()[:12]}:desk:"
            store = RedisDeskStore.from_url(url, prefix=prefix)
        made.append(store)
        return store

    yield open_store
    for store in made:
        store.close()


def test_points_shifts_and_status(tmp_path, opener):
    store = opener(tmp_path)
    if isinstance(store, DeskStore):
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


def test_ticket_secret_is_stored_hashed_and_rotates(tmp_path, opener):
    store = opener(tmp_path)
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
    if isinstance(store, DeskStore):
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
def test_queue_walks_fifo_within_priority_nobody_twice_nothing_lost(tmp_path_factory, opener, ops):
    """Callers join, lawyers serve the next, the server restarts (the store is reopened): the
    served order is FIFO within priority, nobody is served twice, no waiting caller is lost."""
    path = tmp_path_factory.mktemp("walk")
    store = opener(path)
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
            store = opener(path)
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


# -- Redis's own: the same answers as SQLite, several nodes, a Redis away -----------------------


def _script(store) -> list:
    """A day at a hall, the same calls on any store; every read it makes, in order."""
    return _reads(store, *_day(store))


def _day(store) -> tuple[list[int], int, str]:
    """A day at a hall: (the four tickets' ids, an over shift's id, the first ticket's secret)."""
    store.add_point("hall-1", "公共法律服务中心 Hall 1", "1-7 00:00-24:00", "人民路 1 号")
    store.add_point("hall-2", "Hall 2", "1-5 09:00-17:00")
    store.add_point("hall-2", "Hall 2 (moved)", "1-5 08:30-17:00", "New Road 2")  # replaced
    s1 = store.add_shift("li", "hall-1", T0, T0 + 3600)
    store.add_shift("wu", "hall-2", T0 + 100, T0 + 7200)
    s3 = store.add_shift("li", "hall-2", T0 - 7200, T0 - 3600)  # over
    store.remove_shift(s1.id)
    store.set_status("li", "available", T0)
    store.set_status("li", "busy", T0 + 1)
    store.set_status("wu", "away", T0)
    a, secret = store.add_ticket(
        now=T0, kind="citizen", point="hall-1", name="张三", phone="13800138000",
        topic="debt", state="waiting", consent_online=True,
    )  # fmt: skip
    b, _ = store.add_ticket(
        now=T0 + 2, kind="mediation", point=None, name="案件 7", topic="mediation",
        state="waiting", session="s-7", lawyer=None,
    )  # fmt: skip
    c, _ = store.add_ticket(
        now=T0 + 3, kind="citizen", point="hall-2", name="李四", phone="13900139000",
        topic="labour", state="callback", callback_at=T0 + 86400, lang="en",
    )  # fmt: skip
    d, _ = store.add_ticket(
        now=T0 + 4, kind="citizen", point="hall-1", name="王五", phone="13800138000",
        topic="family", state="callback",
    )  # fmt: skip
    store.touch(a.id, T0 + 10)
    store.touch(999, T0 + 10)  # no such ticket: nothing made
    store.update(
        a.id, actor="staff:li", event="picked", now=T0 + 20, expect=("waiting",),
        state="serving", lawyer="li", picked_at=T0 + 20, session="s-9",
    )  # fmt: skip
    store.update(
        a.id, actor="staff:li", event="ended", now=T0 + 620, expect=("serving",),
        state="done", ended_at=T0 + 620, summary="建议协商 Negotiate", referral=True,
    )  # fmt: skip
    store.update(a.id, actor="citizen", event="rated", now=T0 + 630, rating=5, comment="好")
    store.update(c.id, actor="staff:wu", event=None, now=T0 + 5, question="工资 wages")
    store.log(a.id, "staff:wu", "history_read", T0 + 700, reader="wu", 说明="读过")
    store.log(None, "system", "sweep", T0 + 701)
    store.add_document(a.id, {"id": "d1", "name": "合同.pdf", "mime": "application/pdf",
                              "size": 10, "sha256": "ab" * 32}, T0 + 15)  # fmt: skip
    store.add_legal_aid(store.ticket(a.id), "li", "欠薪 Wages owed", T0 + 640)
    store.add_legal_aid(store.ticket(c.id), "wu", "second", T0 + 650)
    return [a.id, b.id, c.id, d.id], s3.id, secret


def _reads(store, ids: list[int], over: int, secret: str) -> list:
    """Every read of what ``_day`` made, in order."""
    reads = []
    a, b, c, d = (store.ticket(tid) for tid in ids)
    for tid in (a.id, b.id, c.id, d.id, 999):
        t = store.ticket(tid)
        reads.append(None if t is None else {**t.__dict__, "secret_hash": bool(t.secret_hash)})
    reads += [
        store.points(), store.point("hall-2"), store.point("nowhere"),
        [(s.lawyer, s.point, s.start, s.end) for s in store.shifts(T0)],
        [(s.lawyer, s.point) for s in store.shifts(0)], over > 0, store.statuses(),
        store.ticket_by_secret(secret).id,
        [t.id for t in store.live()], [t.id for t in store.callbacks()],
        [t.id for t in store.for_phone("13800138000")], store.for_phone(""),
        [t.id for t in store.for_session("s-9")], [t.id for t in store.for_session("s-7")],
        [t.id for t in store.since(T0 + 3)], store.handling_times("hall-1"),
        store.handling_times(None), store.handling_times("hall-2"),
        store.log_rows(a.id), store.log_rows(), store.documents(a.id), store.documents(b.id),
        [{k: v for k, v in case.items() if k != "id"} for case in store.legal_aid_cases(1)],
    ]  # fmt: skip
    return reads


def test_both_stores_give_the_same_answers(tmp_path, redis_server):  # noqa: F811
    sqlite = DeskStore(tmp_path)
    on_redis = RedisDeskStore.from_url(redis_server.url, prefix=f"t{secrets.token_hex(4)}:desk:")
    try:
        expected = _script(sqlite)
        got = _script(on_redis)
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            assert have == want, f"read {i}"
        assert expected[0]["consent_online"] == 1 and expected[0]["rating"] == 5  # it read
    finally:
        sqlite.close()
        on_redis.close()


def _waiting(store) -> int:
    t, _ = store.add_ticket(
        now=T0, kind="citizen", point="hall", name="x", topic="other", state="waiting"
    )
    return t.id


def test_two_nodes_picking_one_citizen_one_wins(redis_server):  # noqa: F811
    prefix = f"t{secrets.token_hex(4)}:desk:"
    nodes = [RedisDeskStore.from_url(redis_server.url, prefix=prefix) for _ in range(8)]
    try:
        for _ in range(5):
            tid = _waiting(nodes[0])
            barrier = threading.Barrier(len(nodes))
            outcomes: list[str] = [""] * len(nodes)

            def pick(i, tid=tid, barrier=barrier, outcomes=outcomes):
                barrier.wait()
                try:
                    nodes[i].update(
                        tid, actor=f"staff:l{i}", event="picked", now=T0 + 1,
                        expect=("waiting",), state="serving", lawyer=f"l{i}",
                    )  # fmt: skip
                    outcomes[i] = "picked"
                except DeskError as exc:
                    outcomes[i] = exc.code

            def poll(tid=tid, barrier=barrier):
                barrier.wait()
                for n in range(50):  # the citizen's page polls meanwhile
                    nodes[0].touch(tid, T0 + n / 100)

            threads = [threading.Thread(target=pick, args=(i,)) for i in range(1, len(nodes))]
            threads.append(threading.Thread(target=poll))
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(outcomes[1:]) == ["conflict"] * (len(nodes) - 2) + ["picked"]
            ticket = nodes[3].ticket(tid)
            winner = outcomes.index("picked")
            assert (ticket.state, ticket.lawyer) == (
                "serving",
                f"l{winner}",
            )  # the poll lost nothing
            assert [r[3] for r in nodes[5].log_rows(tid)] == ["queued", "picked"]
            assert [t.id for t in nodes[6].live()].count(tid) == 1
    finally:
        for node in nodes:
            node.close()


def _values(client, name: bytes) -> list[bytes]:
    kind = client.type(name)
    if kind == b"hash":
        return [x for kv in client.hgetall(name).items() for x in kv]
    if kind == b"list":
        return client.lrange(name, 0, -1)
    if kind == b"set":
        return list(client.smembers(name))
    if kind == b"zset":
        return client.zrange(name, 0, -1)
    return [client.get(name)]


def test_redis_keeps_no_secret_and_away_is_unavailable(redis_server):  # noqa: F811
    store = RedisDeskStore.from_url(redis_server.url, prefix=f"t{secrets.token_hex(4)}:desk:")
    client = redis.Redis.from_url(redis_server.url)
    try:
        store.add_point("hall", "Hall", "1-7 00:00-24:00")
        t, secret = store.add_ticket(
            now=T0, kind="citizen", point="hall", name="x", phone="13800138000", topic="debt",
            state="waiting",
        )  # fmt: skip
        names = client.keys(store.prefix + "*")
        stored = b"".join(names + [v for name in names for v in _values(client, name)])
        assert t.secret_hash.encode() in stored  # the hash is kept (the check can see it)
        assert secret.encode() not in stored  # the secret itself nowhere
        assert b"13800138000" not in b"".join(names)  # the phone number in no key name
        with pytest.raises(DeskError) as e:
            store.update(t.id + 1, actor="x", event="picked", now=T0, state="serving")
        assert e.value.code == "not_found"
    finally:
        store.close()
        client.close()
    away = RedisDeskStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    for call in (
        lambda: away.live(),
        lambda: away.add_point("hall", "Hall", "1-7 00:00-24:00"),
        lambda: away.update(1, actor="x", event=None, now=T0, state="done"),
        lambda: away.touch(1, T0),
    ):
        with pytest.raises(DeskError) as e:
            call()
        assert e.value.code == "unavailable"
    away.close()
