"""Staff accounts on Redis, for several nodes (docs/scaling.md, "Accounts on Redis").

The same rules as the SQLite store (``rooms.accounts.Accounts``: validation, Argon2, the
throttling windows, sessions kept as digests); only the records live in Redis, so an account
added once logs in on every node, a login session opened on one node is valid on all of them
(the cookie names a host, not a node), a logout ends it everywhere at once, and the failed
logins of a password sprayer are counted together whichever node they reach.

The node's own data directory still counts (``local``): an account Redis does not have is looked
up there, and copied into Redis with its password digest the first time it is found, so the
staff a node had before it joined a cluster keep logging in, and ``server.py user add
--data-dir`` (the file) works as before; ``user add --redis`` puts it in Redis directly. Redis
wins when both have a username.

Keys (``prefix`` ``parley:``):

* ``account:<username>``: a hash (``display_name``, ``roles``, ``password_hash``, ``created``),
  created by one script that refuses a taken username; ``accounts``: the set of usernames;
* ``staff_session:<sha256 of the cookie>``: a hash (``username``, ``csrf``, ``expires``) that
  Redis expires with the session;
* ``login_failure:<key>``: a hash (``failures``, ``since``) counted by one script (a window that
  started ``LOCK_SECONDS`` ago starts again), expired by Redis after the window.

Every call is one round trip (a script or a pipeline) on a blocking client with short timeouts:
the server calls ``session`` and ``get`` on its event loop for each staff request, as it does
with SQLite.
"""

from __future__ import annotations

import time

import redis
from argon2 import PasswordHasher

from cluster.client import sync_client
from rooms.accounts import LOCK_SECONDS, AccountRecord, Accounts, AccountStore, StaffSession

# KEYS[1] the account, KEYS[2] the set of usernames; ARGV: username, then field, value, ...
_INSERT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the failure keys; ARGV[1] now, ARGV[2] expired (a window started at or before it is
# over), ARGV[3] seconds Redis keeps a key after its last failure
_FAIL = """
for _, key in ipairs(KEYS) do
  local since = tonumber(redis.call('HGET', key, 'since'))
  if since == nil or since <= tonumber(ARGV[2]) then
    redis.call('HSET', key, 'failures', 1, 'since', ARGV[1])
  else
    redis.call('HINCRBY', key, 'failures', 1)
  end
  redis.call('EXPIRE', key, ARGV[3])
end
return 0
"""

_FIELDS = ("display_name", "roles", "password_hash")


class RedisAccountStore(Accounts):
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "parley:",
        clock=time.time,
        hasher: PasswordHasher | None = None,
        local: AccountStore | None = None,
    ) -> None:
        super().__init__(clock=clock, hasher=hasher)
        self._local = local
        self._redis = client
        self.prefix = prefix
        self._insert_script = client.register_script(_INSERT)
        self._fail_script = client.register_script(_FAIL)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "parley:", **kw) -> RedisAccountStore:
        client = sync_client(url)
        return cls(client, prefix=prefix, **kw)

    def close(self) -> None:
        self._redis.close()
        if self._local is not None:
            self._local.close()

    def _account_key(self, username: str) -> str:
        return f"{self.prefix}account:{username}"

    def _session_key(self, digest: str) -> str:
        return f"{self.prefix}staff_session:{digest}"

    def _failure_key(self, key: str) -> str:
        return f"{self.prefix}login_failure:{key}"

    # -- accounts -----------------------------------------------------------------------------
    def _insert(self, record: AccountRecord, created: float) -> bool:
        fields = [v for name in _FIELDS for v in (name, getattr(record, name))]
        keys = [self._account_key(record.username), f"{self.prefix}accounts"]
        return bool(self._insert_script(keys, [record.username, *fields, "created", repr(created)]))

    def _record(self, username: str) -> AccountRecord | None:
        values = self._redis.hmget(self._account_key(username), _FIELDS)
        record = _record(username, values)
        if record is None and self._local is not None:
            record = self._local._record(username)
            if record is not None and not self._insert(record, self._clock()):
                return _record(username, self._redis.hmget(self._account_key(username), _FIELDS))
        return record

    def _records(self) -> list[AccountRecord]:
        names = sorted(n.decode() for n in self._redis.smembers(f"{self.prefix}accounts"))
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self._account_key(name), _FIELDS)
        found = zip(names, pipe.execute(), strict=True)
        records = [r for name, values in found if (r := _record(name, values)) is not None]
        if self._local is not None:
            shared = {r.username for r in records}
            records += [r for r in self._local._records() if r.username not in shared]
        return records

    # -- throttling ---------------------------------------------------------------------------
    def _failures(self, keys: list[str], expired: float) -> dict[str, int]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._failure_key(key), ("failures", "since"))
        counts = {}
        for key, (failures, since) in zip(keys, pipe.execute(), strict=True):
            if failures is not None and since is not None and float(since) > expired:
                counts[key] = int(failures)
        return counts

    def _fail(self, keys: list[str], now: float, expired: float) -> None:
        self._fail_script(
            [self._failure_key(k) for k in keys], [repr(now), repr(expired), LOCK_SECONDS + 60]
        )

    def _forgive(self, key: str) -> None:
        self._redis.delete(self._failure_key(key))

    # -- browser sessions ---------------------------------------------------------------------
    def _put_session(self, digest: str, s: StaffSession, now: float) -> None:
        key = self._session_key(digest)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"username": s.username, "csrf": s.csrf, "expires": repr(s.expires)})
        pipe.expire(key, max(1, int(s.expires - now) + 60))  # the check below is the clock's
        pipe.execute()

    def _get_session(self, digest: str) -> tuple[str, str, float] | None:
        username, csrf, expires = self._redis.hmget(
            self._session_key(digest), ("username", "csrf", "expires")
        )
        if username is None or csrf is None or expires is None:
            return None
        return username.decode(), csrf.decode(), float(expires)

    def _drop_session(self, digest: str) -> None:
        self._redis.delete(self._session_key(digest))


def _record(username: str, values: list[bytes | None]) -> AccountRecord | None:
    if any(v is None for v in values):
        return None
    display_name, roles, password_hash = (v.decode() for v in values)
    return AccountRecord(username, display_name, roles, password_hash)
