"""The visitation database: one SQLite file in the data directory, its schema, its transactions.

``visits.sqlite3`` holds the directory (sites, terminals, inmates, approved visitors, help-education
organisations), the staff grants and the bookings. It is mode 0600 (it names people in custody and
their families; ``booking_workers`` names the help-education workers of a visit). A data
directory from before a table or column existed is migrated when it is opened: new tables and
indexes by ``IF NOT EXISTS``, new columns by ``ALTER TABLE``. Writes run in ``BEGIN IMMEDIATE`` transactions, so two writers, in this process or
another, are serialised by SQLite itself; the ``holds`` table's primary key (a resource and a
15-minute cell) makes a double booking of a terminal or an inmate impossible even if a rule above
it were wrong. Identity numbers are kept only as HMAC digests under a key of the data directory
(``visits-id.key``, 0600), so the file alone does not give them back, plus their last four digits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from signaling.keyfile import load_or_create
from sqlstore import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (
  id TEXT PRIMARY KEY, site TEXT NOT NULL REFERENCES sites(id), kind TEXT NOT NULL,
  name TEXT NOT NULL, hours TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1,
  token_hash TEXT, token_issued REAL);
CREATE TABLE IF NOT EXISTS maintenance (
  id INTEGER PRIMARY KEY, terminal TEXT NOT NULL REFERENCES terminals(id),
  start TEXT NOT NULL, end TEXT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS inmates (
  id INTEGER PRIMARY KEY, facility TEXT NOT NULL REFERENCES sites(id), number TEXT NOT NULL,
  name TEXT NOT NULL, grade TEXT NOT NULL, status TEXT NOT NULL, UNIQUE(facility, number));
CREATE TABLE IF NOT EXISTS visitors (
  id INTEGER PRIMARY KEY, inmate INTEGER NOT NULL REFERENCES inmates(id), name TEXT NOT NULL,
  relationship TEXT NOT NULL, id_hash TEXT NOT NULL, id_last4 TEXT NOT NULL,
  evidence TEXT NOT NULL, approved_by TEXT NOT NULL, reason TEXT NOT NULL, expires TEXT NOT NULL,
  contact TEXT NOT NULL DEFAULT '', UNIQUE(inmate, id_hash));
CREATE TABLE IF NOT EXISTS orgs (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, site TEXT REFERENCES sites(id));
CREATE TABLE IF NOT EXISTS workers (
  id INTEGER PRIMARY KEY, org TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
  id_hash TEXT NOT NULL, id_last4 TEXT NOT NULL, UNIQUE(org, id_hash));
CREATE TABLE IF NOT EXISTS grants (
  username TEXT NOT NULL, role TEXT NOT NULL, site TEXT NOT NULL,
  PRIMARY KEY(username, role, site));
CREATE TABLE IF NOT EXISTS bookings (
  id INTEGER PRIMARY KEY, inmate INTEGER NOT NULL REFERENCES inmates(id),
  bureau_terminal TEXT NOT NULL, facility_terminal TEXT NOT NULL, start TEXT NOT NULL,
  minutes INTEGER NOT NULL, status TEXT NOT NULL, exception_reason TEXT NOT NULL DEFAULT '',
  exception_by TEXT NOT NULL DEFAULT '', contact TEXT NOT NULL DEFAULT '',
  lang TEXT NOT NULL DEFAULT 'zh', requested_by TEXT NOT NULL, created TEXT NOT NULL,
  reason_code TEXT NOT NULL DEFAULT '', rescheduled_from INTEGER,
  kind TEXT NOT NULL DEFAULT 'visitation');
CREATE TABLE IF NOT EXISTS booking_visitors (
  booking INTEGER NOT NULL REFERENCES bookings(id), visitor INTEGER NOT NULL REFERENCES visitors(id),
  PRIMARY KEY(booking, visitor));
CREATE TABLE IF NOT EXISTS holds (
  resource TEXT NOT NULL, cell TEXT NOT NULL, booking INTEGER NOT NULL REFERENCES bookings(id),
  PRIMARY KEY(resource, cell));
CREATE TABLE IF NOT EXISTS booking_log (
  id INTEGER PRIMARY KEY, booking INTEGER NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS checkins (
  booking INTEGER NOT NULL REFERENCES bookings(id), visitor INTEGER NOT NULL REFERENCES visitors(id),
  at TEXT NOT NULL, by TEXT NOT NULL, method TEXT NOT NULL, pledge INTEGER NOT NULL,
  PRIMARY KEY(booking, visitor));
CREATE TABLE IF NOT EXISTS live_visits (
  booking INTEGER PRIMARY KEY REFERENCES bookings(id), session TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL, bureau_pid TEXT NOT NULL, facility_pid TEXT NOT NULL, created TEXT NOT NULL,
  ended INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meal_items (
  id INTEGER PRIMARY KEY, facility TEXT NOT NULL REFERENCES sites(id), name TEXT NOT NULL,
  price_cents INTEGER NOT NULL, per_month INTEGER NOT NULL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS meal_orders (
  id INTEGER PRIMARY KEY, inmate INTEGER NOT NULL REFERENCES inmates(id),
  visitor INTEGER NOT NULL REFERENCES visitors(id), placed_at TEXT NOT NULL,
  placed_by TEXT NOT NULL, total_cents INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'placed',
  delivered_at TEXT NOT NULL DEFAULT '', delivered_by TEXT NOT NULL DEFAULT '',
  month TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meal_lines (
  meal_order INTEGER NOT NULL REFERENCES meal_orders(id),
  item INTEGER NOT NULL REFERENCES meal_items(id), qty INTEGER NOT NULL,
  price_cents INTEGER NOT NULL, PRIMARY KEY(meal_order, item));
CREATE TABLE IF NOT EXISTS record_entries (
  id INTEGER PRIMARY KEY, inmate INTEGER NOT NULL REFERENCES inmates(id), kind TEXT NOT NULL,
  period TEXT NOT NULL, title TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
  published_by TEXT NOT NULL, published_at TEXT NOT NULL, withdrawn INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS record_reads (
  id INTEGER PRIMARY KEY, inmate INTEGER NOT NULL REFERENCES inmates(id),
  visitor INTEGER NOT NULL REFERENCES visitors(id), read_by TEXT NOT NULL, at TEXT NOT NULL,
  entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS worker_checkins (
  booking INTEGER NOT NULL REFERENCES bookings(id), worker INTEGER NOT NULL REFERENCES workers(id),
  at TEXT NOT NULL, by TEXT NOT NULL, method TEXT NOT NULL, pledge INTEGER NOT NULL,
  PRIMARY KEY(booking, worker));
CREATE TABLE IF NOT EXISTS booking_workers (
  booking INTEGER NOT NULL REFERENCES bookings(id), worker INTEGER NOT NULL REFERENCES workers(id),
  PRIMARY KEY(booking, worker));
CREATE INDEX IF NOT EXISTS bookings_inmate ON bookings(inmate, start);
CREATE INDEX IF NOT EXISTS visitors_contact ON visitors(contact);
CREATE INDEX IF NOT EXISTS booking_visitors_visitor ON booking_visitors(visitor);
CREATE INDEX IF NOT EXISTS bookings_start ON bookings(start);
"""


class VisitStore(SqliteStore):
    """The connection, a lock for this process's threads, and the identity-number key."""

    def __init__(self, data_dir: str | Path, *, file: str = "visits.sqlite3") -> None:
        super().__init__(data_dir, file, SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(bookings)")}
        if "kind" not in columns:  # a database from before privileged bookings
            self._db.execute(
                "ALTER TABLE bookings ADD COLUMN kind TEXT NOT NULL DEFAULT 'visitation'"
            )
        self._key = load_or_create(
            Path(data_dir) / "visits-id.key", lambda: secrets.token_bytes(32), min_length=32
        )

    def id_hash(self, number: str) -> str:
        """Keyed digest of a normalised identity number: comparable, not reversible."""
        return hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()
