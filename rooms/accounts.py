"""Staff accounts: mediators, officers, operators, admins log in; parties never do.

Passwords are hashed with Argon2id (memory-hard). Failed logins are throttled per address and
username, per address, and per username across all addresses (``LOCK_AFTER``, ``ADDRESS_LIMIT``,
``ACCOUNT_LIMIT`` failures within ``LOCK_SECONDS``); the counts live in the store so that a restart does not reset them. Unknown
usernames are counted and verified (against a dummy hash) exactly like known ones, so neither the
answer nor its timing reveals who has an account, and one address cannot lock the user out from
another. Browser sessions are random ids kept server-side (as SHA-256 digests, so a copy of the
file opens no session) with an expiry, so logout takes effect at once. The file is mode 0600.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

STAFF_ROLES = frozenset(
    {"admin", "mediator", "duty_lawyer", "operator", "officer", "supervisor", "reviewer"}
)
LOCK_AFTER = 5  # failures of one username from one address
ADDRESS_LIMIT = 20  # failures from one address, whatever the usernames
ACCOUNT_LIMIT = 100  # failures of one username from all addresses together (a botnet's guesses)
LOCK_SECONDS = 15 * 60  # the window the failures are counted in, and the wait once throttled
MAX_NAME = 64  # longer submitted usernames are counted by their first 64 characters
SESSION_SECONDS = 12 * 3600
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


class AccountError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    roles: frozenset[str]

    def to_dict(self) -> dict:
        return {"username": self.username, "name": self.display_name, "roles": sorted(self.roles)}


@dataclass(frozen=True)
class StaffSession:
    id: str
    username: str
    csrf: str
    expires: float


class Accounts:
    """The rules every account store follows: what a valid account is, Argon2, the throttling
    windows, browser sessions by digest. Subclasses keep the records (``AccountStore``: SQLite in
    the data directory; ``cluster.accounts.RedisAccountStore``: Redis, for several nodes).

    Every method is blocking (the records, Argon2) and safe to call from worker threads: the web
    server calls ``authenticate`` and ``open_session`` off the event loop.
    """

    def __init__(self, *, clock=time.time, hasher: PasswordHasher | None = None) -> None:
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def close(self) -> None:
        pass

    # -- accounts -----------------------------------------------------------------------------
    def add(self, username: str, display_name: str, roles: list[str], password: str) -> Account:
        username = username.strip().lower()
        if not (2 <= len(username) <= 40) or not set(username) <= USERNAME_CHARS:
            raise AccountError("invalid", "username: 2-40 of a-z 0-9 . _ -")
        if not display_name.strip() or len(display_name) > 100:
            raise AccountError("invalid", "display name: 1-100 characters")
        bad = set(roles) - STAFF_ROLES
        if not roles or bad:
            raise AccountError("invalid", f"roles must be among {sorted(STAFF_ROLES)}")
        if len(password) < 10:
            raise AccountError("invalid", "password: at least 10 characters")
        record = AccountRecord(
            username, display_name.strip(), ",".join(sorted(roles)), self._hasher.hash(password)
        )
        if not self._insert(record, self._clock()):
            raise AccountError("conflict", f"user {username!r} exists")
        return record.account()

    def get(self, username: str) -> Account | None:
        record = self._record(username)
        return record.account() if record else None

    def list(self) -> list[Account]:
        return [r.account() for r in sorted(self._records(), key=lambda r: r.username)]

    # -- authentication -----------------------------------------------------------------------
    def authenticate(self, username: str, password: str, address: str = "") -> Account:
        """Check a password from a client address; raises ``bad_credentials`` or ``throttled``.

        Unknown usernames take the same path as wrong passwords (counted, verified against a
        dummy hash), so the answers and their timing do not reveal who has an account.
        """
        name = (username or "").strip().lower()[:MAX_NAME]
        limits = {
            f"pair:{address}/{name}": LOCK_AFTER,
            f"addr:{address}": ADDRESS_LIMIT,
            f"user:{name}": ACCOUNT_LIMIT,
        }
        now = self._clock()
        counts = self._failures(list(limits), now - LOCK_SECONDS)
        if any(counts.get(key, 0) >= limit for key, limit in limits.items()):
            raise AccountError("throttled", "too many failed attempts; try again later")
        record = self._record(name)
        digest = record.password_hash if record else self._dummy_hash()
        if self._verify(digest, password or "") and record:
            self._forgive(f"pair:{address}/{name}")
            return record.account()
        self._fail(list(limits), now, now - LOCK_SECONDS)
        raise AccountError("bad_credentials", "wrong username or password")

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    # -- browser sessions ---------------------------------------------------------------------
    def open_session(self, username: str) -> StaffSession:
        """A new session; its ``id`` is the cookie value, only its digest is stored."""
        now = self._clock()
        s = StaffSession(
            secrets.token_urlsafe(32), username, secrets.token_urlsafe(24), now + SESSION_SECONDS
        )
        self._put_session(_digest(s.id), s, now)
        return s

    def session(self, session_id: str | None) -> StaffSession | None:
        if not session_id or len(session_id) > 100:
            return None
        row = self._get_session(_digest(session_id))
        if row is None or row[2] < self._clock():
            return None
        return StaffSession(session_id, *row)

    def close_session(self, session_id: str) -> None:
        self._drop_session(_digest(session_id))

    # -- the records (subclasses) -------------------------------------------------------------
    def _insert(self, record: AccountRecord, created: float) -> bool:
        """Store a new account; False when the username is taken."""
        raise NotImplementedError

    def _record(self, username: str) -> AccountRecord | None:
        raise NotImplementedError

    def _records(self) -> list[AccountRecord]:
        raise NotImplementedError

    def _failures(self, keys: list[str], expired: float) -> dict[str, int]:
        """The failures counted under each key in a window that started after ``expired``."""
        raise NotImplementedError

    def _fail(self, keys: list[str], now: float, expired: float) -> None:
        """Count one failure under each key; a key's window starts at its first failure (a
        window that started at or before ``expired`` starts again now)."""
        raise NotImplementedError

    def _forgive(self, key: str) -> None:
        raise NotImplementedError

    def _put_session(self, digest: str, s: StaffSession, now: float) -> None:
        raise NotImplementedError

    def _get_session(self, digest: str) -> tuple[str, str, float] | None:
        """(username, csrf, expires) of a stored session."""
        raise NotImplementedError

    def _drop_session(self, digest: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class AccountRecord:
    """An account as stored: roles comma-separated, the Argon2 digest of the password."""

    username: str
    display_name: str
    roles: str
    password_hash: str

    def account(self) -> Account:
        return Account(self.username, self.display_name, frozenset(self.roles.split(",")))


class AccountStore(Accounts):
    """Accounts, login throttling and browser sessions in one SQLite file (mode 0600)."""

    def __init__(self, path: str | Path, *, clock=time.time, hasher: PasswordHasher | None = None):
        super().__init__(clock=clock, hasher=hasher)
        _private_file(Path(path))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # -wal and -shm take the file's mode
        self._lock = threading.Lock()
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS accounts (
              username TEXT PRIMARY KEY, display_name TEXT NOT NULL, roles TEXT NOT NULL,
              password_hash TEXT NOT NULL, created REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS staff_sessions (
              id TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL, expires REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS login_failures (
              key TEXT PRIMARY KEY, failures INTEGER NOT NULL, since REAL NOT NULL);
            DELETE FROM staff_sessions WHERE length(id) != 64;  -- ids stored before hashing
            """
        )

    def close(self) -> None:
        self._db.close()

    def _insert(self, record: AccountRecord, created: float) -> bool:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts(username, display_name, roles, password_hash, created)"
                    " VALUES (?,?,?,?,?)",
                    (*dataclasses.astuple(record), created),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def _record(self, username: str) -> AccountRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT username, display_name, roles, password_hash FROM accounts"
                " WHERE username=?",
                (username,),
            ).fetchone()
        return AccountRecord(*row) if row else None

    def _records(self) -> list[AccountRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT username, display_name, roles, password_hash FROM accounts"
            ).fetchall()
        return [AccountRecord(*r) for r in rows]

    def _failures(self, keys: list[str], expired: float) -> dict[str, int]:
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, failures FROM login_failures WHERE key IN ({marks}) AND since > ?",
                (*keys, expired),
            ).fetchall()
        return dict(rows)

    def _fail(self, keys: list[str], now: float, expired: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE since <= ?", (expired,))
            self._db.executemany(
                "INSERT INTO login_failures VALUES (?, 1, ?)"
                " ON CONFLICT(key) DO UPDATE SET failures = failures + 1",
                [(key, now) for key in keys],
            )

    def _forgive(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE key=?", (key,))

    def _put_session(self, digest: str, s: StaffSession, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO staff_sessions VALUES (?,?,?,?)",
                (digest, s.username, s.csrf, s.expires),
            )
            self._db.execute("DELETE FROM staff_sessions WHERE expires < ?", (now,))

    def _get_session(self, digest: str) -> tuple[str, str, float] | None:
        with self._lock:
            return self._db.execute(
                "SELECT username, csrf, expires FROM staff_sessions WHERE id=?", (digest,)
            ).fetchone()

    def _drop_session(self, digest: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM staff_sessions WHERE id=?", (digest,))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _private_file(path: Path) -> None:
    """Create the database file (and tighten an existing one and its -wal/-shm) to mode 0600,
    before SQLite creates it with the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)
