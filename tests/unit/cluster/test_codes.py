"""One-time codes and their windows (desk/codes.py, signaling/otp.py) on both stores: this
process's memory and a real redis-server (cluster/codes.py). The same cases run on both: a code
used once, expiry (the injected ``now``), the lock-out after MAX_ATTEMPTS wrong tries, the
sending and joining windows, the OTP contact. Redis's own: two stores on one Redis (two nodes)
share codes and windows, Redis expires the keys by itself, racing threads never get more than
MAX_ATTEMPTS tries nor more hits than the limit, key names hold no phone number, and a Redis
that does not answer gives ``unavailable``."""

from __future__ import annotations

import re
import secrets
import threading
import time

import pytest
import redis

from cluster.codes import RedisCodeStore
from desk.codes import (
    CODE_TTL,
    MAX_ATTEMPTS,
    MemoryCodeStore,
    PhoneCodes,
    StoreUnavailable,
    Window,
    derive_key,
)
from desk.errors import DeskError
from signaling.otp import CONTACT_TTL, OneTimeCodes, OtpError
from tests.support.procs import free_port
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from tests.support.server_proc import wait_until

PHONE = "13800138000"
SECRET = secrets.token_bytes(32)


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """Stores of one kind; with Redis every store made in one test shares the same keys (one
    store per node), with memory they are one store (one node)."""
    made = []
    memory = MemoryCodeStore()

    def make_store():
        if request.param == "memory":
            return memory
        url = request.getfixturevalue("redis_server").url
        prefix = request.getfixturevalue("redis_prefix")
        store = RedisCodeStore.from_url(url, key=derive_key(SECRET, "redis-keys"), prefix=prefix)
        made.append(store)
        return store

    yield make_store
    for store in made:
        store.close()


@pytest.fixture
def nodes(request):
    """Redis code stores, one per node, on one real redis-server."""
    made = []
    url = request.getfixturevalue("redis_server").url
    prefix = request.getfixturevalue("redis_prefix")

    def make_store():
        store = RedisCodeStore.from_url(url, key=derive_key(SECRET, "redis-keys"), prefix=prefix)
        made.append(store)
        return store

    yield make_store
    for store in made:
        store.close()


def desk_codes(store, **kw) -> PhoneCodes:
    return PhoneCodes(store=store, key=derive_key(SECRET, "desk"), name="desk", **kw)


def refusal(fn, *args) -> str:
    try:
        fn(*args)
    except (DeskError, OtpError) as exc:
        return exc.code
    return "ok"


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# -- the same cases on both stores --------------------------------------------------------------


def test_a_code_is_used_once_and_expires(make):
    codes = desk_codes(make())
    now = time.time()
    code = codes.issue(PHONE, "1.2.3.4", now)
    assert refusal(codes.verify, PHONE, code, now + 10) == "ok"
    assert refusal(codes.verify, PHONE, code, now + 11) == "no_code"  # used once
    code = codes.issue(PHONE, "1.2.3.4", now + 20)
    assert refusal(codes.verify, PHONE, code, now + 20 + CODE_TTL - 1) == "ok"
    code = codes.issue(PHONE, "1.2.3.4", now + 30)
    assert refusal(codes.verify, PHONE, code, now + 31 + CODE_TTL) == "no_code"  # expired
    assert refusal(codes.verify, "13900139000", code, now + 31) == "no_code"  # none issued
    assert refusal(codes.verify, PHONE, None, now + 31) == "no_code"


def test_a_new_code_replaces_the_old_one_and_its_tries(make):
    codes = desk_codes(make(), per_phone=5)
    now = time.time()
    old = codes.issue(PHONE, "a", now)
    for _ in range(MAX_ATTEMPTS - 1):
        assert refusal(codes.verify, PHONE, wrong(old), now) == "wrong_code"
    new = codes.issue(PHONE, "a", now + 1)
    if new != old:
        assert refusal(codes.verify, PHONE, old, now + 2) == "wrong_code"  # the count restarted
    assert refusal(codes.verify, PHONE, new, now + 2) == "ok"


def test_five_wrong_tries_lock_the_code(make):
    codes = desk_codes(make())
    now = time.time()
    code = codes.issue(PHONE, "1.2.3.4", now)
    for _ in range(MAX_ATTEMPTS - 1):
        assert refusal(codes.verify, PHONE, wrong(code), now + 1) == "wrong_code"
    assert refusal(codes.verify, PHONE, wrong(code), now + 1) == "locked"
    assert refusal(codes.verify, PHONE, code, now + 1) == "no_code"  # the right code is gone


def test_code_sending_is_limited_per_phone_and_per_address(make):
    codes = desk_codes(make(), per_phone=3, per_address=5, window=900)
    now = time.time()
    for i in range(3):
        codes.issue(PHONE, "a", now + i)
    assert refusal(codes.issue, PHONE, "b", now + 5) == "throttled"
    codes.issue(PHONE, "b", now + 901)  # the window moved on
    for i in range(2):
        codes.issue(f"1390013800{i}", "a", now + 10 + i)
    assert refusal(codes.issue, "13900138009", "a", now + 20) == "throttled"  # five from a


def test_windows_slide_and_are_kept_apart_by_name(make):
    store = make()
    w = Window(2, 10, store=store, name="desk:join_phone")
    other = Window(2, 10, store=store, name="desk:join_address")
    now = time.time()
    assert w.allow("k", now) and w.allow("k", now + 1) and not w.allow("k", now + 2)
    assert w.allow("k", now + 10.5) and w.allow("other", now + 2)
    assert other.allow("k", now + 2)  # another window's count


def test_purposes_do_not_share_codes(make):
    store = make()
    desk = desk_codes(store)
    family = PhoneCodes(store=store, key=derive_key(SECRET, "family"), name="family")
    now = time.time()
    code = desk.issue(PHONE, "a", now)
    assert refusal(family.verify, PHONE, code, now) == "no_code"
    assert refusal(desk.verify, PHONE, code, now) == "ok"


class Outbox:
    """A notifier that keeps what it was given (the interface of signaling/otp.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str, text: str) -> None:
        self.sent.append((to, text))

    def code(self) -> str:
        return re.search(r"\b(\d{6})\b", self.sent[-1][1]).group(1)


async def test_identity_codes_and_their_contact(make):
    now = [time.time()]
    outbox = Outbox()
    otp = OneTimeCodes(outbox, store=make(), key=derive_key(SECRET, "otp"), clock=lambda: now[0])
    await otp.send("s1", "p1", "张三", "zhang@example.org", "案件 1")
    code = outbox.code()
    assert otp.contact("s1", "p1") == "zhang@example.org"
    assert otp.contact("s1", "p2") is None
    assert refusal(otp.verify, "s1", "p2", code) == "no_code"  # another participant's
    assert refusal(otp.verify, "s2", "p1", code) == "no_code"  # another session's
    assert refusal(otp.verify, "s1", "p1", f" {code} ") == "ok"
    assert refusal(otp.verify, "s1", "p1", code) == "no_code"
    await otp.send("s1", "p1", "张三", "zhang@example.org", "案件 1")
    code = outbox.code()
    for _ in range(MAX_ATTEMPTS - 1):
        assert refusal(otp.verify, "s1", "p1", wrong(code)) == "wrong_code"
    assert refusal(otp.verify, "s1", "p1", wrong(code)) == "locked"
    await otp.send("s1", "p1", "张三", "zhang@example.org", "案件 1")
    now[0] += CODE_TTL + 1
    assert refusal(otp.verify, "s1", "p1", outbox.code()) == "no_code"  # expired
    assert otp.contact("s1", "p1") == "zhang@example.org"  # kept for the sealed agreement
    with pytest.raises(OtpError) as e:
        await otp.send("s1", "p1", "张三", "not an address", "案件 1")
    assert e.value.code == "invalid"


def test_a_remembered_value_lasts_its_time_by_the_callers_clock_and_can_be_forgotten(make):
    store, now = make(), time.time()
    store.remember("family:session:ab", "13700137000", 1800.0, now)
    store.remember("family:session:cd", "x y@example.org", 1800.0, now)  # a space in the value
    assert store.recall("family:session:ab", now + 1800.0) == "13700137000"
    assert store.recall("family:session:ab", now + 1800.5) is None  # over, by the given clock
    assert store.recall("family:session:cd", now) == "x y@example.org"
    assert store.recall("family:session:ef", now) is None
    store.forget("family:session:cd")
    store.forget("family:session:ef")  # nothing to forget: no error
    assert store.recall("family:session:cd", now) is None


async def test_the_memory_store_forgets_a_contact_after_its_time():
    now = [time.time()]
    otp = OneTimeCodes(Outbox(), clock=lambda: now[0])
    await otp.send("s1", "p1", "张三", "zhang@example.org", "案件 1")
    now[0] += CONTACT_TTL + 1
    assert otp.contact("s1", "p1") is None


# -- Redis: two nodes, expiry by Redis, races, bad days -----------------------------------------


def test_a_code_issued_on_one_node_is_accepted_on_another(nodes):
    a, b = desk_codes(nodes()), desk_codes(nodes())
    now = time.time()
    code = a.issue(PHONE, "1.2.3.4", now)
    assert refusal(b.verify, PHONE, code, now + 1) == "ok"
    assert refusal(a.verify, PHONE, code, now + 2) == "no_code"  # used, on every node
    code = b.issue(PHONE, "1.2.3.4", now + 3)
    for node in (a, b, a, b):
        assert refusal(node.verify, PHONE, wrong(code), now + 4) == "wrong_code"
    assert refusal(a.verify, PHONE, wrong(code), now + 4) == "locked"  # the fifth, in total
    # a window counts the requests both nodes saw: 3 codes a phone per 15 minutes
    other = "13900139000"
    a.issue(other, "5.6.7.8", now)
    b.issue(other, "9.9.9.9", now + 1)
    a.issue(other, "5.6.7.8", now + 2)
    assert refusal(b.issue, other, "5.6.7.8", now + 3) == "throttled"


async def test_an_identity_code_and_its_contact_outlive_the_node_that_sent_it(nodes):
    outbox = Outbox()
    a = OneTimeCodes(outbox, store=nodes(), key=derive_key(SECRET, "otp"))
    await a.send("s1", "p1", "张三", "zhang@example.org", "案件 1")
    a._store.close()  # node A is gone; node B took the session over
    b = OneTimeCodes(outbox, store=nodes(), key=derive_key(SECRET, "otp"))
    assert b.contact("s1", "p1") == "zhang@example.org"  # the sealed agreement's address
    assert refusal(b.verify, "s1", "p1", outbox.code()) == "ok"


def test_the_key_of_another_secret_does_not_verify(nodes):
    a = desk_codes(nodes())
    b = PhoneCodes(store=nodes(), key=derive_key(b"another deployment", "desk"), name="desk")
    now = time.time()
    code = a.issue(PHONE, "1.2.3.4", now)
    assert refusal(b.verify, PHONE, code, now) == "wrong_code"


def test_redis_expires_codes_windows_and_contacts_by_itself(nodes, redis_server):  # noqa: F811
    store = nodes()
    client = redis.Redis.from_url(redis_server.url)
    now = time.time()
    store.put("desk:code:1", b"d" * 32, now + 0.3, now)
    store.hit("desk:join_phone:1", 3, 0.3, now)
    store.remember("otp:contact:s/p", "x@example.org", 0.3, now)
    keys = client.keys(store.prefix + "*")
    assert client.get(next(k for k in keys if b":held:" in k)).endswith(b" x@example.org")
    assert len(keys) == 3
    ttls = [client.pttl(k) for k in keys]
    assert all(0 < t <= 1300 for t in ttls), ttls  # a window is kept one second past its span
    assert wait_until(lambda: not client.keys(store.prefix + "*"), timeout=5)
    assert store.recall("otp:contact:s/p", now) is None
    assert store.attempt("desk:code:1", b"d" * 32, now, MAX_ATTEMPTS) == "no_code"
    client.close()


def test_key_names_hold_no_phone_address_or_session(nodes, redis_server):  # noqa: F811
    codes = desk_codes(nodes())
    codes.issue(PHONE, "203.0.113.7", time.time())
    client = redis.Redis.from_url(redis_server.url)
    names = [k.decode() for k in client.keys(codes._store.prefix + "*")]
    assert len(names) == 3  # the code and its two windows
    for name in names:
        assert PHONE not in name and "203.0.113.7" not in name and "desk" not in name
    held = client.hgetall(next(n for n in names if ":code:" in n))
    assert set(held) == {b"digest", b"expires", b"attempts"}  # an HMAC, not the code
    client.close()


def race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i):
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_racing_wrong_codes_get_max_attempts_in_total(make):
    """Twelve clients (each its own store: its own connection, as on twelve nodes) try wrong
    codes at once: exactly MAX_ATTEMPTS tries are counted, the last one locks, the rest find no
    code; two right codes at once: one is accepted."""
    stores = [make() for _ in range(12)]
    codes = [desk_codes(s, per_phone=100, per_address=100) for s in stores]
    for _ in range(5):
        now = time.time()
        bad = wrong(codes[0].issue(PHONE, "a", now))
        got = race(12, lambda i, c=bad, t=now: refusal(codes[i].verify, PHONE, c, t))
        assert got.count("wrong_code") == MAX_ATTEMPTS - 1, got
        assert got.count("locked") == 1 and got.count("no_code") == 12 - MAX_ATTEMPTS, got
        code = codes[1].issue(PHONE, "a", now)
        got = race(4, lambda i, c=code, t=now: refusal(codes[i].verify, PHONE, c, t))
        assert sorted(got) == ["no_code"] * 3 + ["ok"], got


def test_racing_hits_count_up_to_the_limit_only(make):
    stores = [make() for _ in range(10)]
    now = time.time()
    windows = [Window(7, 60, store=s, name="desk:join_address") for s in stores]
    for r in range(5):
        got = race(10, lambda i, key=f"hall-{r}": windows[i].allow(key, now))
        assert got.count(True) == 7, got


async def test_redis_away_gives_unavailable():
    port = free_port()  # nothing listens there
    store = RedisCodeStore.from_url(f"redis://127.0.0.1:{port}/0", key=b"k" * 32)
    codes = desk_codes(store)
    now = time.time()
    assert refusal(codes.issue, PHONE, "a", now) == "unavailable"
    assert refusal(codes.verify, PHONE, "123456", now) == "unavailable"
    assert refusal(Window(3, 60, store=store).allow, "a", now) == "unavailable"
    otp = OneTimeCodes(Outbox(), store=store, key=b"k" * 32)
    assert refusal(otp.verify, "s", "p", "123456") == "unavailable"
    assert otp.contact("s", "p") is None  # the sealed agreement is then not mailed, not lost
    with pytest.raises(OtpError) as e:
        await otp.send("s", "p", "张三", "zhang@example.org", "案件 1")
    assert e.value.code == "unavailable"
    for step in (
        lambda: store.remember("family:session:ab", "x", 60.0, now),
        lambda: store.recall("family:session:ab", now),
        lambda: store.forget("family:session:ab"),
    ):
        with pytest.raises(StoreUnavailable):
            step()
    store.close()


def test_keys_are_derived_per_purpose_from_the_secret():
    assert derive_key(SECRET, "desk") == derive_key(SECRET, "desk")
    assert derive_key(SECRET, "desk") != derive_key(SECRET, "family")
    assert derive_key(SECRET, "desk") != derive_key(b"other", "desk")
    assert len(derive_key(SECRET, "otp")) == 32
