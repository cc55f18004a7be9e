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


class AccountStore:
    """Accounts, login throttling and browser sessions in one SQLite file.

    Every method is blocking (SQLite, Argon2) and safe to call from worker threads: the web
    server calls ``authenticate`` and ``open_session`` off the event loop.
    """

    def __init__(self, path: str | Path, *, clock=time.time, hasher: PasswordHasher | None = None):
        _private_file(Path(path))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # -wal and -shm take the file's mode
        self._lock = threading.Lock()
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
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
        digest = self._hasher.hash(password)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts(username, display_name, roles, password_hash, created)"
                    " VALUES (?,?,?,?,?)",
                    (
                        username,
                        display_name.strip(),
                        ",".join(sorted(roles)),
                        digest,
                        self._clock(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AccountError("conflict", f"user {username!r} exists") from None
        return Account(username, display_name.strip(), frozenset(roles))

    def get(self, username: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT username, display_name, roles FROM accounts WHERE username=?", (username,)
            ).fetchone()
        return Account(row[0], row[1], frozenset(row[2].split(","))) if row else None

    def list(self) -> list[Account]:
        with self._lock:
            rows = self._db.execute(
                "SELECT username, display_name, roles FROM accounts ORDER BY 1"
            ).fetchall()
        return [Account(r[0], r[1], frozenset(r[2].split(","))) for r in rows]

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
        with self._lock:
            if self._throttled(limits, now):
                raise AccountError("throttled", "too many failed attempts; try again later")
            row = self._db.execute(
                "SELECT password_hash FROM accounts WHERE username=?", (name,)
            ).fetchone()
        if self._verify(row[0] if row else self._dummy_hash(), password or "") and row:
            with self._lock:
                self._db.execute(
                    "DELETE FROM login_failures WHERE key=?", (f"pair:{address}/{name}",)
                )
            account = self.get(name)
            assert account is not None
            return account
        with self._lock:
            self._record_failure(limits, now)
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

    def _throttled(self, limits: dict[str, int], now: float) -> bool:
        marks = ",".join("?" * len(limits))
        rows = self._db.execute(
            f"SELECT key, failures FROM login_failures WHERE key IN ({marks}) AND since > ?",
            (*limits, now - LOCK_SECONDS),
        ).fetchall()
        return any(failures >= limits[key] for key, failures in rows)

    def _record_failure(self, limits: dict[str, int], now: float) -> None:
        """Count one failure under each key; a key's window starts at its first failure."""
        expired = now - LOCK_SECONDS
        self._db.execute("DELETE FROM login_failures WHERE since <= ?", (expired,))
        self._db.executemany(
            "INSERT INTO login_failures VALUES (?, 1, ?)"
            " ON CONFLICT(key) DO UPDATE SET failures = failures + 1",
            [(key, now) for key in limits],
        )

    # -- browser sessions ---------------------------------------------------------------------
    def open_session(self, username: str) -> StaffSession:
        """A new session; its ``id`` is the cookie value, only its digest is stored."""
        s = StaffSession(
            secrets.token_urlsafe(32),
            username,
            secrets.token_urlsafe(24),
            self._clock() + SESSION_SECONDS,
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO staff_sessions VALUES (?,?,?,?)",
                (_digest(s.id), s.username, s.csrf, s.expires),
            )
            self._db.execute("DELETE FROM staff_sessions WHERE expires < ?", (self._clock(),))
        return s

    def session(self, session_id: str | None) -> StaffSession | None:
        if not session_id or len(session_id) > 100:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT username, csrf, expires FROM staff_sessions WHERE id=?",
                (_digest(session_id),),
            ).fetchone()
        if row is None or row[2] < self._clock():
            return None
        return StaffSession(session_id, *row)

    def close_session(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM staff_sessions WHERE id=?", (_digest(session_id),))


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
