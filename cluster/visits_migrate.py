"""``server.py visits migrate``: a one-machine visits database (``visits.sqlite3``: the
directory, the grants, every booking with its log, check-ins, live visits, meals, the records)
copied into the cluster's Redis as the first entry of its visits log, with the directory's
identity-number key (docs/scaling.md, "The visits database on Redis").

Ids are kept, so the ledgers' case numbers (``<facility>/V-<booking>``), the recordings' names
and the terminals' credentials still name the right rows. All or nothing, in one entry; refused
when the cluster's log holds anything (a second run changes nothing). The server must be
stopped while this runs. A clustered node started on a directory whose visits database was not
copied says so in its log (``left_behind``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

from cluster.migrate import ready
from visits.model import VisitError
from visits.store import VisitStore

log = logging.getLogger("parley")


def run(
    data_dir: Path, redis_url: str | None, out: TextIO = sys.stdout, *, prefix: str = "parley:"
) -> int:
    """0 copied; 1 refused (the cluster's visits database is not empty); 2 nothing done."""
    path = Path(data_dir) / "visits.sqlite3"
    if not ready(redis_url, path, "visits database", out):
        return 2
    from cluster.visits import RedisVisitStore

    source = VisitStore(Path(data_dir))
    try:
        target = RedisVisitStore.from_url(data_dir, redis_url, prefix=prefix)
    except ValueError as exc:
        source.close()
        print(f"invalid: {exc}", file=out)
        return 2
    try:
        copied = target.copy_from(source)
    except VisitError as exc:
        if exc.code == "conflict":
            print(f"REFUSED: {exc.message}; nothing was copied", file=out)
            return 1
        print(f"unavailable: Redis at {redis_url}: {exc.message}", file=out)
        return 2
    finally:
        source.close()
        target.close()
    print("copied " + ", ".join(f"{n} {table}" for table, n in copied.items() if n), file=out)
    return 0


def left_behind(path: Path, store) -> bool:
    """Says so in the log when the data directory's own visits database has sites and the
    cluster's log is empty: its bookings and directory are not served until copied there."""
    if not path.is_file():
        return False
    own = VisitStore(path.parent, file=path.name)
    try:
        behind = bool(own.rows("SELECT 1 FROM sites LIMIT 1")) and store.position()[0] == 0
    finally:
        own.close()
    if behind:
        log.warning(
            "the visits database in %s is not in the cluster's Redis: its sites, bookings and"
            " people are not served until it is copied there (server stopped: python server.py"
            " visits migrate --data-dir %s --redis URL)",
            path,
            path.parent,
        )
    return behind
