"""``server.py recordings purge [--now ISO]``: one retention pass, from the command line.

The same pass the server runs hourly (recording/retention.py). ``--now`` replaces the clock
(an ISO 8601 date or time; naive means UTC), so an operator can see what a later date would
delete, and tests run it on a simulated clock. Run it while the server is stopped, or on the
server's own data directory while it runs (the ledger serialises the appends; SQLite locks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from recording.retention import KINDS, parse_days, purge
from rooms.ledger import SqliteLedgerStore
from rooms.service import SessionService


def add_recordings_parser(sub) -> None:
    r = sub.add_parser("recordings", help="recording retention")
    r_sub = r.add_subparsers(dest="recordings_command", required=True)
    p = r_sub.add_parser("purge", help="delete recordings past their retention period now")
    p.add_argument("--now", help="pretend it is this time (ISO 8601; naive = UTC)")
    p.add_argument("--data-dir", dest="data_dir")


def parse_now(raw: str | None) -> float:
    if raw is None:
        return time.time()
    when = dt.datetime.fromisoformat(raw)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def retention_days(config) -> dict[str, int | None]:
    """kind -> days from the ``retention_days_<kind>`` settings; ValueError on a bad one."""
    return {kind: parse_days(getattr(config, f"retention_days_{kind}")) for kind in KINDS}


def recordings_command(args: argparse.Namespace, config) -> int:
    try:
        now = parse_now(args.now)
        days = retention_days(config)
    except ValueError as exc:
        print(f"invalid: {exc}")
        return 2
    data_dir = Path(config.data_dir)
    store = SqliteLedgerStore(data_dir / "ledger.sqlite3")
    try:
        service = SessionService(store)
        service.recover(mark_disconnected=False)
        outcomes = purge(service, data_dir / "recordings", days, now)
    finally:
        store.close()
    for o in outcomes:
        print(o.session, o.result, len(o.files), o.detail)
    if not outcomes:
        print("nothing due")
    return 1 if any(o.result == "failed" for o in outcomes) else 0
