"""Staff accounts: mediators, officers, operators, admins log in; parties never do.

Passwords are hashed with Argon2id (memory-hard). Repeated failures lock the account for a while
(``LOCK_AFTER`` failures -> ``LOCK_SECONDS``); the lock and the failure count live in the store so
that a restart does not reset them. Browser sessions are random ids kept server-side with an
expiry, so logout and lockout take effect at once.
"""

from __future__ import annotations

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
LOCK_AFTER = 5
LOCK_SECONDS = 15 * 60
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
    def __init__(self, path: str | Path, *, clock=time.time, hasher: PasswordHasher | None = None):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS accounts (
              username TEXT PRIMARY KEY, display_name TEXT NOT NULL, roles TEXT NOT NULL,
              password_hash TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0,
              locked_until REAL NOT NULL DEFAULT 0, created REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS staff_sessions (
              id TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL, expires REAL NOT NULL);
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
        row = self._db.execute(
            "SELECT username, display_name, roles FROM accounts WHERE username=?", (username,)
        ).fetchone()
        return Account(row[0], row[1], frozenset(row[2].split(","))) if row else None

    def list(self) -> list[Account]:
        rows = self._db.execute("SELECT username, display_name, roles FROM accounts ORDER BY 1")
        return [Account(r[0], r[1], frozenset(r[2].split(","))) for r in rows]

    # -- authentication -----------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> Account:
        """Check a password; raises ``bad_credentials`` or ``locked`` (same message for unknown
        users and wrong passwords, so the form does not reveal who has an account)."""
        username = (username or "").strip().lower()
        now = self._clock()
        with self._lock:
            row = self._db.execute(
                "SELECT password_hash, failures, locked_until FROM accounts WHERE username=?",
                (username,),
            ).fetchone()
            if row is None:
                self._hasher.hash(password or "x")  # same cost as a real check
                raise AccountError("bad_credentials", "wrong username or password")
            digest, failures, locked_until = row
            if locked_until > now:
                raise AccountError("locked", "too many failed attempts; try again later")
            try:
                self._hasher.verify(digest, password or "")
            except (VerificationError, InvalidHashError):
                failures += 1
                lock = now + LOCK_SECONDS if failures >= LOCK_AFTER else 0
                self._db.execute(
                    "UPDATE accounts SET failures=?, locked_until=? WHERE username=?",
                    (0 if lock else failures, lock, username),
                )
                raise AccountError(
                    "locked" if lock else "bad_credentials",
                    "too many failed attempts; try again later"
                    if lock
                    else "wrong username or password",
                ) from None
            self._db.execute(
                "UPDATE accounts SET failures=0, locked_until=0 WHERE username=?", (username,)
            )
        account = self.get(username)
        assert account is not None
        return account

    # -- browser sessions ---------------------------------------------------------------------
    def open_session(self, username: str) -> StaffSession:
        s = StaffSession(
            secrets.token_urlsafe(32),
            username,
            secrets.token_urlsafe(24),
            self._clock() + SESSION_SECONDS,
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO staff_sessions VALUES (?,?,?,?)", (s.id, s.username, s.csrf, s.expires)
            )
            self._db.execute("DELETE FROM staff_sessions WHERE expires < ?", (self._clock(),))
        return s

    def session(self, session_id: str | None) -> StaffSession | None:
        if not session_id or len(session_id) > 100:
            return None
        row = self._db.execute(
            "SELECT id, username, csrf, expires FROM staff_sessions WHERE id=?", (session_id,)
        ).fetchone()
        if row is None or row[3] < self._clock():
            return None
        return StaffSession(*row)

    def close_session(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM staff_sessions WHERE id=?", (session_id,))
