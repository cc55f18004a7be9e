"""Staff account store: throttling windows and keys, the dummy hash for unknown usernames,
hashed session ids, a private file."""

from __future__ import annotations

import stat
import time

import pytest
from argon2 import PasswordHasher

from rooms.accounts import (
    ACCOUNT_LIMIT,
    ADDRESS_LIMIT,
    LOCK_AFTER,
    LOCK_SECONDS,
    AccountError,
    AccountStore,
)

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)  # real Argon2, small


@pytest.fixture
def accounts(tmp_path, clock):
    store = AccountStore(tmp_path / "accounts.sqlite3", clock=clock, hasher=CHEAP)
    store.add("wang", "王调解员", ["mediator"], PASSWORD)
    yield store
    store.close()


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
