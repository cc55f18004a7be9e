"""One-time codes, their rate-limit windows and the OTP contacts on Redis, for several nodes
(docs/scaling.md, "Codes on Redis").

The rules stay in ``desk.codes`` (``PhoneCodes``, ``Window``) and ``signaling.otp``
(``OneTimeCodes``); this store keeps only the records, so a code issued through one node is
accepted through another (a citizen's requests reach any worker or machine; a mediation's
identity code outlives the node that sent it, when another takes the session over), and a
window counts the requests every node saw.

Keys (``prefix`` ``parley:``); ``<id>`` is an HMAC of the caller's key (purpose, phone, address,
session) under a key derived from the server secret, so Redis holds no phone number, address
or session id in a key name:

* ``code:<id>``: a hash (``digest``, ``expires``, ``attempts``), replaced by ``put``, tried by
  one script (expired: gone; ``attempts`` counted; a match or the last wrong try deletes it),
  expired by Redis with the code;
* ``window:<id>``: a sorted set of hit times (unique members), trimmed, counted and added to by
  one script, expired by Redis a window after its last hit;
* ``held:<id>``: a string, what ``remember`` keeps (the address an OTP went to, the contact a
  family sign-in acts for) after the time it is good until, expired by Redis.

Times are the nodes' clocks (``now`` from the caller, as in memory), so the injected clock of
the tests works on both stores; the nodes' clocks must agree to within a fraction of the 10 and
15 minute windows (NTP), as the leases already require.

Why a blocking client: the callers (``ConsultDesk.join``, ``FamilyPages.login``,
``OneTimeCodes.verify``/``contact``, ``AgreementDesk.deliver_sealed``) call the store from
plain methods, some of them not coroutines; each call here is one round trip (one script or one
command) with 1 s timeouts, as ``cluster.accounts.RedisAccountStore`` does for each staff
request, so while Redis is away a request is refused with ``unavailable`` after at most a second
instead of holding the event loop longer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import redis

from cluster.client import sync_client
from desk.codes import CodeStore, StoreUnavailable

# KEYS[1] the code; ARGV[1] the digest tried, ARGV[2] now, ARGV[3] the attempts allowed.
# The digests are HMACs under a key the client never sees, so comparing them with == (not in
# constant time) tells a guesser nothing about the code.
_ATTEMPT = """
local held = redis.call('HMGET', KEYS[1], 'digest', 'expires')
if not held[1] or not held[2] or tonumber(held[2]) < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 'no_code'
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if held[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'ok'
end
if attempts >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 'locked'
end
return 'wrong_code'
"""

# KEYS[1] the window; ARGV[1] now, ARGV[2] seconds, ARGV[3] limit, ARGV[4] a unique member
_HIT = """
local now, seconds = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - seconds)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(seconds * 1000) + 1000)
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000) + 1)


class RedisCodeStore(CodeStore):
    def __init__(self, client: redis.Redis, *, key: bytes, prefix: str = "parley:") -> None:
        self._redis = client
        self._key = key  # names the Redis keys (desk.codes.derive_key(secret, "redis-keys"))
        self.prefix = prefix
        self._attempt = client.register_script(_ATTEMPT)
        self._hit = client.register_script(_HIT)

    @classmethod
    def from_url(cls, url: str, *, key: bytes, prefix: str = "parley:") -> RedisCodeStore:
        client = sync_client(url)
        return cls(client, key=key, prefix=prefix)

    def close(self) -> None:
        self._redis.close()

    def _name(self, kind: str, key: str) -> str:
        pseudonym = hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()[:40]
        return f"{self.prefix}{kind}:{pseudonym}"

    def put(self, key: str, digest: bytes, expires: float, now: float) -> None:
        name = self._name("code", key)
        fields = {"digest": digest.hex(), "expires": repr(expires), "attempts": 0}
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(name)
            pipe.hset(name, mapping=fields)
            pipe.pexpire(name, _ms(expires - now))
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def attempt(self, key: str, digest: bytes, now: float, max_attempts: int) -> str:
        try:
            outcome = self._attempt(
                [self._name("code", key)], [digest.hex(), repr(now), max_attempts]
            )
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return outcome.decode()

    def hit(self, key: str, limit: int, seconds: float, now: float) -> bool:
        member = f"{now!r}/{secrets.token_hex(6)}"  # two hits at the same time are two hits
        try:
            counted = self._hit(
                [self._name("window", key)], [repr(now), repr(seconds), limit, member]
            )
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return counted == 1

    def remember(self, key: str, value: str, seconds: float, now: float) -> None:
        held = f"{now + seconds!r} {value}"  # the end by the caller's clock, as for codes
        try:
            self._redis.set(self._name("held", key), held, px=_ms(seconds))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def recall(self, key: str, now: float) -> str | None:
        try:
            held = self._redis.get(self._name("held", key))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        if held is None:
            return None
        until, value = held.decode().split(" ", 1)
        return value if float(until) >= now else None

    def forget(self, key: str) -> None:
        try:
            self._redis.delete(self._name("held", key))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
