"""The Redis ledger under the session service, and across a Redis crash: what Redis
acknowledged (appendfsync always) is still there after SIGKILL and a restart, and the session
rebuilt from it is the one that was running."""

from __future__ import annotations

import redis

from cluster.ledger import RedisLedgerStore
from rooms.commands import decode_command
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
    assert redis.Redis.from_url(url).xlen(f"parley:ledger:{sid}") == 1
    assert server.main(["ledger", "verify", sid, "--redis", url]) == 0
    assert "chain OK" in capsys.readouterr().out
    assert server.main(["ledger", "verify", "s-absent", "--redis", url]) == 1
    service._store.close()
