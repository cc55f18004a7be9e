"""``server.py desk migrate`` (cluster/desk_migrate.py): a one-machine desk copied into a real
redis-server answers every read as the SQLite file did (the same day at a hall as the stores'
own test: points, shifts, statuses, tickets in every state, the log, documents, legal-aid
cases, a citizen's page address), and what is made afterwards continues its ids. A second run
is refused and changes nothing; bad input is refused before anything is written. A clustered
node started on a data directory whose desk is not in Redis says so in its log."""

from __future__ import annotations

import subprocess

import pytest

from cluster.desk import RedisDeskStore
from cluster.desk_migrate import left_behind
from desk.store import DeskStore
from tests.support.procs import free_port
from tests.support.redisd import own_database, redis_server, snapshot  # noqa: F401
from tests.support.server_proc import cli
from tests.unit.desk.test_store import T0, _day, _reads


def migrate(data_dir, *redis_args: str) -> subprocess.CompletedProcess:
    return cli(data_dir, "desk", "migrate", *redis_args)


@pytest.fixture
def url(redis_server):  # noqa: F811
    with own_database(redis_server, 10) as url:
        yield url


def test_a_desk_moved_to_redis_answers_as_it_did(tmp_path, url):
    own = DeskStore(tmp_path)
    made = _day(own)
    expected = _reads(own, *made)
    cases = own.legal_aid_cases()
    own.close()

    done = migrate(tmp_path, "--redis", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "copied 2 service points, 2 shifts, 2 lawyers, 4 tickets, 10 log entries" in done.stdout
    ), done.stdout
    store = RedisDeskStore.from_url(url)
    try:
        got = _reads(store, *made)
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            assert have == want, f"read {i}"
        assert store.legal_aid_cases() == cases
        # what is made next continues the ids (the documents' folders and ledgers name them)
        nxt, _ = store.add_ticket(
            now=T0 + 900, kind="citizen", point="hall-1", name="赵六", topic="debt",
            state="waiting", phone="13700137000",
        )  # fmt: skip
        assert nxt.id == max(made[0]) + 1
        assert store.add_shift("wu", "hall-1", T0, T0 + 60).id == 4
        assert store.add_legal_aid(nxt, "li", "third", T0 + 901) == max(c["id"] for c in cases) + 1
        assert not left_behind(tmp_path / "desk.sqlite3", store)  # both have the points
    finally:
        store.close()

    before = snapshot(url)
    again = migrate(tmp_path, "--redis", url)
    assert again.returncode == 1 and "REFUSED" in again.stdout, again.stdout
    assert snapshot(url) == before  # nothing written


def test_bad_input_is_refused_and_writes_nothing(tmp_path, url):
    own = DeskStore(tmp_path)
    own.add_point("hall-1", "Hall", "1-7 00:00-24:00")
    own.close()
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    for args, code, says in [
        ((), 2, "invalid: name the cluster's Redis"),
        (("--redis", "http://nowhere"), 2, "invalid:"),
        (("--redis", closed), 2, "unavailable: Redis at"),
    ]:
        out = migrate(tmp_path, *args)
        assert (out.returncode, out.stdout.startswith(says)) == (code, True), out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    out = migrate(empty, "--redis", url)
    assert out.returncode == 2 and out.stdout.startswith("not_found: no desk at"), out.stdout
    assert not (empty / "desk.sqlite3").exists()  # not made by looking
    assert snapshot(url) == {}


def test_a_node_on_a_desk_left_behind_says_so(tmp_path, url, caplog):
    own = DeskStore(tmp_path)
    own.add_point("hall-1", "Hall", "1-7 00:00-24:00")
    own.close()
    store = RedisDeskStore.from_url(url)
    try:
        with caplog.at_level("WARNING", logger="parley"):
            assert left_behind(tmp_path / "desk.sqlite3", store)
        assert "python server.py desk migrate" in caplog.text
        assert not left_behind(tmp_path / "nothing.sqlite3", store)
    finally:
        store.close()
