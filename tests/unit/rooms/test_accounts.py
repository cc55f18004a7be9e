"""Staff account stores: throttling windows and keys, the dummy hash for unknown usernames,
hashed session ids, a private file. The shared tests run against both stores, the SQLite file
and a real redis-server (cluster/accounts.py); the Redis store's own: two nodes see one set of
accounts, sessions and failures, a username taken once however many add it at once, and the
accounts of a data directory copied into an empty Redis."""

from __future__ import annotations

import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher

from cluster.accounts import RedisAccountStore
from rooms.accounts import (
    ACCOUNT_LIMIT,
    ADDRESS_LIMIT,
    LOCK_AFTER,
    LOCK_SECONDS,
    SESSION_SECONDS,
    AccountError,
    AccountStore,
)
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)  # real Argon2, small


def _factory(kind: str, request, tmp_path, clock):
    """Stores of one kind; with Redis every store made in one test shares the same keys (two
    nodes)."""
    made = []

    def make_store():
        if kind == "sqlite":
            store = AccountStore(tmp_path / "accounts.sqlite3", clock=clock, hasher=CHEAP)
        else:
            url = request.getfixturevalue("redis_server").url
            prefix = request.getfixturevalue("redis_prefix")
            store = RedisAccountStore.from_url(url, prefix=prefix, clock=clock, hasher=CHEAP)
        made.append(store)
        return store

    return make_store, made


@pytest.fixture(params=["sqlite", "redis"])
def make(request, tmp_path, clock):
    make_store, made = _factory(request.param, request, tmp_path, clock)
    yield make_store
    for store in made:
        store.close()


@pytest.fixture
def nodes(request, tmp_path, clock):
    """Redis account stores, one per node, on one real redis-server."""
    make_store, made = _factory("redis", request, tmp_path, clock)
    yield make_store
    for store in made:
        store.close()


@pytest.fixture
def accounts(make):
    store = make()
    store.add("wang", "王调解员", ["mediator"], PASSWORD)
    return store


def code_of(store, username, password, address):
    try:
        store.authenticate(username, password, address)
        return "ok"
    except AccountError as exc:
        return exc.code


def test_a_throttled_pair_waits_out_the_window_then_may_try_again(accounts, clock):
    codes = [code_of(accounts, "wang", "guess!", "10.0.0.1") for _ in range(LOCK_AFTER + 1)]
    assert codes == ["bad_credentials"] * LOCK_AFTER + ["throttled"]
    assert code_of(accounts, "wang", PASSWORD, "10.0.0.1") == "throttled"
    assert code_of(accounts, "wang", PASSWORD, "10.0.0.2") == "ok"
    clock.advance(LOCK_SECONDS + 1)
    assert code_of(accounts, "wang", PASSWORD, "10.0.0.1") == "ok"


def test_unknown_usernames_are_throttled_exactly_like_known_ones(accounts):
    known = [code_of(accounts, "wang", "guess!", "10.0.0.1") for _ in range(LOCK_AFTER + 1)]
    unknown = [code_of(accounts, "ghost", "guess!", "10.0.0.1") for _ in range(LOCK_AFTER + 1)]
    assert known == unknown


def test_one_address_is_throttled_after_the_address_limit(accounts):
    codes = [code_of(accounts, f"u{i}", "guess!", "10.0.0.1") for i in range(ADDRESS_LIMIT + 1)]
    assert codes[-2:] == ["bad_credentials", "throttled"]
    assert code_of(accounts, "wang", PASSWORD, "10.0.0.1") == "throttled"
    assert code_of(accounts, "wang", PASSWORD, "10.0.0.2") == "ok"


def test_many_addresses_guessing_one_account_are_throttled_together(accounts):
    for i in range(ACCOUNT_LIMIT):
        assert (
            code_of(accounts, "wang", "guess!", f"10.1.{i // 200}.{i % 200}") == "bad_credentials"
        )
    assert code_of(accounts, "wang", PASSWORD, "10.9.9.9") == "throttled"


def test_an_unknown_username_costs_a_password_check(tmp_path):
    """The dummy hash has the real parameters, so unknown users take as long as wrong passwords."""
    store = AccountStore(tmp_path / "accounts.sqlite3")
    store.add("wang", "王调解员", ["mediator"], PASSWORD)

    def fastest(username: str) -> float:
        times = []
        for i in range(3):
            start = time.perf_counter()
            code_of(store, username, "guess!", f"10.0.0.{i}")
            times.append(time.perf_counter() - start)
        return min(times)

    code_of(store, "ghost", "warm-up", "10.0.0.9")  # the dummy hash is made on first use
    known, unknown = fastest("wang"), fastest("ghost")
    store.close()
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_session_ids_are_stored_as_digests_and_legacy_rows_dropped(tmp_path, clock):
    path = tmp_path / "accounts.sqlite3"
    store = AccountStore(path, clock=clock, hasher=CHEAP)
    sess = store.open_session("wang")
    store._db.execute("INSERT INTO staff_sessions VALUES ('raw-legacy-id', 'wang', 'c', 9e12)")
    stored = [r[0] for r in store._db.execute("SELECT id FROM staff_sessions ORDER BY 1")]
    assert sess.id not in stored and store.session(sess.id) == sess
    store.close()
    store = AccountStore(path, clock=clock, hasher=CHEAP)
    assert store.session("raw-legacy-id") is None
    assert store._db.execute("SELECT count(*) FROM staff_sessions").fetchone()[0] == 1
    store.close_session(sess.id)
    assert store.session(sess.id) is None
    store.close()


def test_an_existing_readable_store_is_tightened_to_0600(tmp_path):
    path = tmp_path / "accounts.sqlite3"
    AccountStore(path, hasher=CHEAP).close()
    path.chmod(0o644)
    AccountStore(path, hasher=CHEAP).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_accounts_are_validated_and_listed_and_a_username_is_taken_once(accounts):
    for bad in (
        ("x", "X", ["mediator"], PASSWORD),
        ("Bad Name!", "X", ["mediator"], PASSWORD),
        ("li", " ", ["mediator"], PASSWORD),
        ("li", "X", ["pope"], PASSWORD),
        ("li", "X", [], PASSWORD),
        ("li", "X", ["mediator"], "short"),
    ):
        with pytest.raises(AccountError) as err:
            accounts.add(*bad)
        assert err.value.code == "invalid"
    with pytest.raises(AccountError) as err:
        accounts.add(" WANG ", "又一个王", ["officer"], PASSWORD)
    assert err.value.code == "conflict"
    accounts.add("li.officer", "李警官", ["officer", "supervisor"], PASSWORD)
    assert [a.to_dict() for a in accounts.list()] == [
        {"username": "li.officer", "name": "李警官", "roles": ["officer", "supervisor"]},
        {"username": "wang", "name": "王调解员", "roles": ["mediator"]},
    ]
    assert accounts.get("ghost") is None
    assert accounts.get("wang").roles == frozenset({"mediator"})


def test_a_session_lasts_until_logout_or_expiry(accounts, clock):
    s = accounts.open_session("wang")
    assert accounts.session(s.id) == s
    assert accounts.session(s.id + "x") is None and accounts.session(None) is None
    assert accounts.session("x" * 101) is None
    accounts.close_session(s.id)
    assert accounts.session(s.id) is None
    later = accounts.open_session("wang")
    clock.advance(SESSION_SECONDS + 1)
    assert accounts.session(later.id) is None


def test_two_nodes_share_accounts_sessions_and_failures(nodes, clock):
    a, b = nodes(), nodes()
    a.add("wang", "王调解员", ["mediator"], PASSWORD)
    assert b.authenticate("wang", PASSWORD, "10.0.0.1").username == "wang"
    s = b.open_session("wang")
    assert a.session(s.id) == s
    a.close_session(s.id)  # logout on one node ends the session on every node
    assert b.session(s.id) is None
    for node in [a, b] * LOCK_AFTER:
        code_of(node, "wang", "guess!", "10.0.0.7")
    assert code_of(a, "wang", PASSWORD, "10.0.0.7") == "throttled"
    clock.advance(LOCK_SECONDS + 1)
    assert code_of(b, "wang", PASSWORD, "10.0.0.7") == "ok"


def test_many_nodes_adding_one_username_at_once_make_one_account(nodes):
    stores = [nodes() for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def add(i: int, node) -> str:
        barrier.wait()
        try:
            node.add("zhao", f"赵 {i}", ["mediator"], PASSWORD)
            return "added"
        except AccountError as exc:
            return exc.code

    with ThreadPoolExecutor(len(stores)) as pool:
        outcomes = list(pool.map(add, range(len(stores)), stores))
    assert sorted(outcomes) == ["added"] + ["conflict"] * (len(stores) - 1)
    assert [a.username for a in stores[0].list()] == ["zhao"]


def test_a_nodes_own_accounts_log_in_and_are_copied_into_redis_on_first_sight(
    tmp_path,
    clock,
    redis_server,  # noqa: F811
    redis_prefix,  # noqa: F811
):
    local = AccountStore(tmp_path / "accounts.sqlite3", clock=clock, hasher=CHEAP)
    local.add("wang", "王调解员", ["mediator"], PASSWORD)
    url, prefix = redis_server.url, redis_prefix
    node = RedisAccountStore.from_url(url, prefix=prefix, clock=clock, hasher=CHEAP, local=local)
    other = RedisAccountStore.from_url(url, prefix=prefix, clock=clock, hasher=CHEAP)
    try:
        assert [a.username for a in other.list()] == []
        node.add("li", "李警官", ["officer"], PASSWORD)  # a new account goes to Redis
        assert [a.username for a in node.list()] == ["li", "wang"]
        assert [a.username for a in other.list()] == ["li"]  # the file's: not copied by a list
        assert node.authenticate("wang", PASSWORD, "10.0.0.1").username == "wang"
        assert other.authenticate("wang", PASSWORD, "10.0.0.2").username == "wang"  # copied
        local.add("zhou", "周", ["mediator"], PASSWORD)  # `user add --data-dir` while it runs
        assert node.get("zhou").display_name == "周"
        # Redis wins: the same username added to the file afterwards changes nothing
        local.add("li", "冒名", ["admin"], "another password")
        assert node.get("li").roles == frozenset({"officer"})
        assert code_of(node, "li", "another password", "10.0.0.3") == "bad_credentials"
    finally:
        node.close()  # closes its file too
        other.close()
