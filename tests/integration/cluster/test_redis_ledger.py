"""The Redis ledger under the session service, and across a Redis crash: what Redis
acknowledged (appendfsync always) is still there after SIGKILL and a restart, and the session
rebuilt from it is the one that was running."""

from __future__ import annotations

import asyncio

import pytest
import redis

from cluster.ledger import RedisLedgerStore
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import verify_chain
from rooms.service import ParticipantSpec, SessionService
from rooms.state import SessionState
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures


def _session(service: SessionService):
    state = service.create_session(
        "mediation",
        actor="staff:wang",
        title="Rent dispute",
        case_number="C-1",
        participants=[
            ParticipantSpec("Mediator Wang", "mediator"),
            ParticipantSpec("Zhang San", "party", "A"),
            ParticipantSpec("Li Si", "party", "B"),
        ],
    )
    ids = {p.name: p.id for p in state.participants.values()}
    return state.id, ids


def _cmd(raw: dict):
    return decode_command(raw)


def test_a_session_runs_on_the_redis_ledger_and_survives_a_redis_crash(
    redis_server,  # noqa: F811
    redis_prefix,  # noqa: F811
):
    store = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    assert store.fsync_always  # the test server runs deploy/redis/redis.conf
    service = SessionService(store)
    sid, ids = _session(service)
    mediator, party = ids["Mediator Wang"], ids["Zhang San"]
    service.execute(sid, "system", _cmd({"type": "connect", "participant": mediator}))
    service.execute(sid, "system", _cmd({"type": "connect", "participant": party}))
    for topic in ("online_mediation", "session_rules"):
        service.execute(sid, party, _cmd({"type": "record_consent", "topic": topic, "given": True}))
    service.execute(sid, mediator, _cmd({"type": "admit", "participant": party}))
    before = service.state(sid)
    assert before.participants[party].space == "joint"
    acknowledged = store.read(sid)
    store.close()

    redis_server.kill()  # SIGKILL: no shutdown save; only the fsync'd AOF is left
    redis_server.start()

    again = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    try:
        assert again.read(sid) == acknowledged
        assert verify_chain(again.read(sid)) == []
        rebuilt = SessionService(again)
        assert rebuilt.recover() == 1
        state = rebuilt.state(sid)
        # the connected two are marked disconnected by the restart; spaces are kept
        assert state.participants[party].space == "joint"
        assert not state.participants[party].connected
        assert state.seq == len(acknowledged) + 2
        # and it carries on, chained onto what was there
        rebuilt.execute(sid, "system", _cmd({"type": "connect", "participant": mediator}))
        assert verify_chain(again.read(sid)) == []
        assert SessionState.from_events(again.read(sid)).seq == state.seq
    finally:
        again.close()


def test_a_stale_writer_after_a_takeover_is_refused(redis_server, redis_prefix):  # noqa: F811
    """Node A served a session, node B took it over (rebuilt it and appended); A, which has
    not noticed yet, appends from its old view: refused, B's chain stands."""
    a = SessionService(RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix))
    sid, ids = _session(a)
    mediator = ids["Mediator Wang"]
    a.execute(sid, "system", _cmd({"type": "connect", "participant": mediator}))
    b_store = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    b = SessionService(b_store)
    b.recover()  # B marks the mediator disconnected (node_restart): the seq moves on
    try:
        a.execute(sid, mediator, _cmd({"type": "chat", "text": "still here?"}))
    except Exception as err:  # noqa: BLE001 - the exact type is asserted below
        assert getattr(err, "code", None) == "conflict"
    else:
        raise AssertionError("the stale node's append went through")
    assert verify_chain(b_store.read(sid)) == []
    assert [e.type for e in b_store.read(sid)][-1] == "participant.disconnected"
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.xlen(f"{redis_prefix}ledger:{sid}") == len(b_store.read(sid))
    raw.close()


def test_the_server_uses_the_redis_ledger_when_given_and_verify_reads_it(
    tmp_path,
    redis_server,  # noqa: F811
    capsys,
):
    import server

    # the server's keys are under the default prefix: a database of its own on the test server
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    redis.Redis.from_url(url).flushdb()
    app = server.create_app(server.Config(data_dir=tmp_path, redis_url=url, demo=False))
    service = app[server.SERVICE]
    sid, _ = _session(service)
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing went to SQLite
    assert service._store.sync == "group"  # the server's mode: the loop never waits on Redis
    assert service._store.wait_durable(timeout=10)
    assert redis.Redis.from_url(url).xlen(f"parley:ledger:{sid}") == 1
    assert server.main(["ledger", "verify", sid, "--redis", url]) == 0
    assert "chain OK" in capsys.readouterr().out
    assert server.main(["ledger", "verify", "s-absent", "--redis", url]) == 1
    service._store.close()


# -- group mode: appends queued, stored by a writer thread, the barrier waits ------------------


def _drafts(n: int, start: int = 0):
    from rooms.events import EventDraft

    return [EventDraft(1000.0 + i, "system", "t", {"i": i}) for i in range(start, start + n)]


async def test_group_mode_stores_in_few_round_trips_and_the_barrier_covers_them(
    redis_server,  # noqa: F811
    redis_prefix,  # noqa: F811
):
    store = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix, sync="group")
    raw = redis.Redis.from_url(redis_server.url)
    try:
        for i in range(200):
            store.append("s-1", _drafts(1, i), expected_seq=i)
        await store.durable()
        assert raw.xlen(f"{redis_prefix}ledger:s-1") == 200  # all there once the barrier passed
        assert 1 <= store.round_trips < 200  # queued appends travel together
        assert verify_chain(store.read("s-1")) == []
    finally:
        store.close()
        raw.close()


async def test_group_mode_a_refused_append_fails_the_barrier_until_forgiven(
    redis_server,  # noqa: F811
    redis_prefix,  # noqa: F811
):
    """Another node appended behind this store's back (a split brain): this store's queued
    append is refused by the script, its barrier raises, ``on_conflict`` names the session,
    and once the session is forgiven barriers pass again."""
    conflicts: list[str] = []
    mine = RedisLedgerStore.from_url(
        redis_server.url, prefix=redis_prefix, sync="group", on_conflict=conflicts.append
    )
    other = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    try:
        mine.append("s-1", _drafts(2), expected_seq=0)
        await mine.durable()
        other.append("s-1", _drafts(1, 7), expected_seq=2)  # the other node's seq 3
        mine.append("s-1", _drafts(1, 2), expected_seq=2)  # this store still believes seq 2
        mine.append("s-2", _drafts(1), expected_seq=0)  # an unrelated session in the same batch
        with pytest.raises(CommandError) as err:
            await mine.durable()
        assert err.value.code == "conflict" and "s-1" in err.value.message
        assert conflicts == ["s-1"]
        events = other.read("s-1")
        assert [e.data["i"] for e in events] == [0, 1, 7]  # the other node's event stands
        assert verify_chain(events) == []
        assert len(mine.read("s-2")) == 1  # the unrelated append was stored
        mine.forgive("s-1")
        await mine.durable()
        # and this store, told the real tail, refuses its stale view at once
        with pytest.raises(CommandError):
            mine.append("s-1", _drafts(1, 9), expected_seq=2)
    finally:
        mine.close()
        other.close()


async def test_group_mode_waits_out_a_redis_restart(redis_server, redis_prefix):  # noqa: F811
    """Redis goes away with appends queued: no barrier passes while it is gone, nothing is
    lost, and once it is back (its AOF reloaded) the appends are stored and acknowledged."""
    store = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix, sync="group")
    try:
        store.append("s-1", _drafts(1), expected_seq=0)
        await store.durable()
        redis_server.kill()
        store.append("s-1", _drafts(2, 1), expected_seq=1)
        barrier = asyncio.ensure_future(store.durable())
        await asyncio.sleep(0.3)  # the writer is retrying: the barrier must still be waiting
        assert not barrier.done()
        redis_server.start()
        await asyncio.wait_for(barrier, 30)
        events = store.read("s-1")
        assert [e.seq for e in events] == [1, 2, 3] and verify_chain(events) == []
    finally:
        store.close()
