"""Moving a data directory's SQLite ledger into Redis (cluster/migrate.py): every event copied
with the same hashes, a second run copies nothing, an interrupted copy is finished, a session
Redis already holds differently or a broken SQLite chain is refused without writing, sessions
not ended are held by the named node; the CLI's refusals write nothing. Real redis-server."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
import time

import pytest
import redis

from bench.takeover import Participant, flowing_pair, rejoin_pair
from cluster.ledger import RedisLedgerStore
from cluster.migrate import migrate, run
from rooms.commands import decode_command
from rooms.events import EventDraft
from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.service import ParticipantSpec, SessionService
from signaling.tokens import TokenSigner, load_or_create_secret
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from tests.support.server_proc import ROOT, ServerProcess


def _sessions(data_dir):
    """Two mediations in a data directory's ledger: one ended, one still open (a party
    admitted). Returns (ended id, open id)."""
    data_dir.mkdir(exist_ok=True)
    store = SqliteLedgerStore(data_dir / "ledger.sqlite3")
    service = SessionService(store)
    ids = []
    for title in ("Ended", "Open"):
        state = service.create_session(
            "mediation",
            actor="staff:wang",
            title=title,
            case_number="C-1",
            participants=[
                ParticipantSpec("Mediator Wang", "mediator"),
                ParticipantSpec("Zhang San", "party", "A"),
            ],
        )
        who = {p.name: p.id for p in state.participants.values()}
        m, p = who["Mediator Wang"], who["Zhang San"]
        for raw in (
            {"type": "connect", "participant": m},
            {"type": "connect", "participant": p},
        ):
            service.execute(state.id, "system", decode_command(raw))
        for topic in ("online_mediation", "session_rules"):
            service.execute(
                state.id,
                p,
                decode_command({"type": "record_consent", "topic": topic, "given": True}),
            )
        service.execute(state.id, m, decode_command({"type": "admit", "participant": p}))
        ids.append(state.id)
    service.execute(ids[0], "staff:wang", decode_command({"type": "end_session"}))
    store.close()
    return ids[0], ids[1]


@pytest.fixture
def stores(tmp_path, redis_server, redis_prefix):  # noqa: F811
    ended, live = _sessions(tmp_path / "data")
    source = SqliteLedgerStore(tmp_path / "data" / "ledger.sqlite3")
    target = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    yield source, target, ended, live
    source.close()
    target.close()


def test_every_event_is_copied_with_its_hash_and_a_second_run_copies_nothing(stores):
    source, target, ended, live = stores
    held = []
    report = migrate(source, target, held.append)
    assert sorted(report.copied) == sorted([ended, live]) and not report.refused
    for session in (ended, live):
        assert target.read(session) == source.read(session)  # seq, ts, data, prev and hash
        assert verify_chain(target.read(session)) == []
    assert set(target.session_ids()) == {ended, live}
    assert held == [live] and report.live == [live]

    again = migrate(source, target, held.append)
    assert again.copied == {} and sorted(again.present) == sorted([ended, live])
    assert [len(target.read(s)) for s in (ended, live)] == [
        len(source.read(s)) for s in (ended, live)
    ]


def test_an_interrupted_copy_is_finished_and_a_session_that_went_on_is_left(stores):
    source, target, ended, live = stores
    events = source.read(live)
    drafts = [EventDraft(e.ts, e.actor, e.type, e.data) for e in events[:3]]
    target.append(live, drafts, expected_seq=0)  # the first three only: an interrupted run
    report = migrate(source, target)
    assert report.copied[live] == len(events) - 3
    assert target.read(live) == events

    # the session goes on in the cluster: Redis holds more than SQLite; nothing is refused
    target.append(
        live,
        [
            EventDraft(
                events[-1].ts + 1,
                "system",
                "participant.disconnected",
                {"participant": events[-1].data.get("participant", "x")},
            )
        ],
    )
    report = migrate(source, target)
    assert live in report.present and not report.refused
    assert target.read(live)[: len(events)] == events


def test_a_session_redis_holds_differently_is_refused_and_not_written(stores):
    source, target, ended, live = stores
    other = source.read(live)[0]
    target.append(live, [EventDraft(other.ts + 5, other.actor, other.type, other.data)])
    before = target.read(live)
    report = migrate(source, target)
    assert live in report.refused and "different" in report.refused[live]
    assert target.read(live) == before  # untouched
    assert target.read(ended) == source.read(ended)  # the others are still copied


def test_a_broken_sqlite_chain_is_refused(tmp_path, stores):
    source, target, ended, live = stores
    db = sqlite3.connect(tmp_path / "data" / "ledger.sqlite3")
    db.execute("UPDATE events SET actor = 'staff:mallory' WHERE session = ? AND seq = 2", (ended,))
    db.commit()
    db.close()
    report = migrate(source, target)
    assert "breaks in SQLite at seq 2" in report.refused[ended]
    assert target.read(ended) == []
    assert target.read(live) == source.read(live)


def test_the_command_refuses_without_writing(tmp_path, redis_server, redis_prefix):  # noqa: F811
    ended, live = _sessions(tmp_path / "data")
    client = redis.Redis.from_url(redis_server.url)

    def run_it(owner=None, data_dir=tmp_path / "data", url=redis_server.url):
        out = io.StringIO()
        return run(data_dir, url, owner, out, prefix=redis_prefix), out.getvalue()

    code, text = run_it()  # a session is still open: which node serves it?
    assert code == 2 and text.startswith("invalid:") and live in text
    code, text = run_it("bad id")
    assert code == 2 and text.startswith("invalid:")
    code, text = run_it("a", url=None)
    assert code == 2 and text.startswith("invalid:")
    assert client.keys(f"{redis_prefix}*") == []  # nothing written by any of them
    code, text = run_it("a", data_dir=tmp_path / "none")
    assert code == 2 and text.startswith("not_found:")
    code, text = run_it("a", url="redis://127.0.0.1:1/0")
    assert code == 2 and text.startswith("unavailable:")

    code, text = run_it("node-a")
    assert code == 0, text
    assert f"copied  {live}" in text and "1 session(s) not ended, held by node node-a" in text
    assert client.smembers(f"{redis_prefix}owned:node-a") == {live.encode()}
    client.close()


@pytest.mark.slow
async def test_a_one_process_mediation_goes_on_in_the_cluster_after_the_move(
    tmp_path,
    redis_server,  # noqa: F811
):
    """A mediation runs on a one-process server (SQLite); the server stops; ``server.py ledger
    migrate`` copies the ledger; a clustered node on the same data directory takes the open
    session back and the people's links bring them back into the joint session with media."""
    url = redis_server.url.rsplit("/", 1)[0] + "/13"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    data = tmp_path / "data"
    one = ServerProcess(data)  # the embedded default: no Redis
    people: list[Participant] = []
    try:
        one.start()
        token_of = {role: links[0].rsplit("/j/", 1)[1] for role, links in one.links.items()}
        pair = await flowing_pair(one.url, token_of, people)
        for person in people:
            await person.close()
        one.stop()
        signer = TokenSigner(load_or_create_secret(data / "secret.key"))
        sid = signer.verify(token_of["mediator"]).session
        ledger = SqliteLedgerStore(data / "ledger.sqlite3")
        before = ledger.read(sid)
        ledger.close()

        cli = [sys.executable, str(ROOT / "server.py"), "ledger", "migrate"]
        cli += ["--data-dir", str(data), "--redis", url, "--owner", "a"]
        done = await asyncio.to_thread(
            subprocess.run, cli, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"copied  {sid}" in done.stdout

        env = {"PARLEY_REDIS_URL": url, "PARLEY_NODE_ID": "a", "PARLEY_DRAIN_SECONDS": "0"}
        node = ServerProcess(data, "--no-demo", env=env)
        node.start_quiet()
        try:
            mediator, party, _ = await rejoin_pair(node.url, pair, time.monotonic(), people)
            assert party.welcome["session"]["space"] == "joint"  # where they were
            m_id, p_id = pair[2], pair[3]  # the same people, media both ways again
            assert mediator.bot.frames_from(p_id) >= 1 and party.bot.frames_from(m_id) >= 1
            store = RedisLedgerStore.from_url(url)
            events = store.read(sid)
            store.close()
            assert events[: len(before)] == before and len(events) > len(before)
            assert verify_chain(events) == []
        finally:
            node.stop()
    finally:
        for person in people:
            await person.close()
        one.stop()
