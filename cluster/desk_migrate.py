"""``server.py desk migrate``: a one-machine desk (``desk.sqlite3``: the service points, the
shifts, the lawyers' statuses, every ticket with its log, the citizens' document list and the
legal-aid cases) copied into the cluster's Redis, where clustered nodes and workers keep the
desk (docs/scaling.md, "The desk on Redis").

Ids are kept, so the files the citizens attached (``<data>/desk-documents/<ticket>/``) and the
ledgers' desk steps still name the right ticket, and a citizen's page address (its secret's
hash is copied) goes on working. All or nothing, in one MULTI/EXEC; refused when the Redis desk
holds anything already (a second run changes nothing). The server must be stopped while this
runs: the tool reads the SQLite file as it stands. A clustered node started on a directory whose
desk was not copied says so in its log (``left_behind``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

from cluster.migrate import ready
from desk.errors import DeskError
from desk.store import DeskStore

log = logging.getLogger("parley")


def run(
    data_dir: Path, redis_url: str | None, out: TextIO = sys.stdout, *, prefix: str = "parley:"
) -> int:
    """0 copied; 1 refused (Redis's desk is not empty); 2 nothing done (says why)."""
    path = Path(data_dir) / "desk.sqlite3"
    if not ready(redis_url, path, "desk", out):
        return 2
    import redis

    from cluster.desk import RedisDeskStore

    try:
        target = RedisDeskStore.from_url(redis_url, prefix=prefix + "desk:")
    except ValueError as exc:
        print(f"invalid: {exc}", file=out)
        return 2
    source = DeskStore(Path(data_dir))
    try:
        copied = target.copy_from(source)
    except DeskError as exc:
        if exc.code == "conflict":
            print(f"REFUSED: {exc.message}; nothing was copied", file=out)
            return 1
        print(f"unavailable: Redis at {redis_url}: {exc.message}", file=out)
        return 2
    except redis.RedisError as exc:
        print(f"unavailable: Redis at {redis_url}: {exc}", file=out)
        return 2
    finally:
        source.close()
        target.close()
    print("copied " + ", ".join(f"{n} {what}" for what, n in copied.items()), file=out)
    return 0


def left_behind(path: Path, store) -> bool:
    """Says so in the log when the data directory's own desk has service points and the
    cluster's has none: its halls, shifts and tickets are not served until copied there."""
    if not path.is_file():
        return False
    own = DeskStore(path.parent, file=path.name)
    try:
        behind = bool(own.points()) and not store.points()
    except DeskError:  # Redis away: the desk's pages say so themselves
        return False
    finally:
        own.close()
    if behind:
        log.warning(
            "the desk in %s is not in the cluster's Redis: its service points are not served"
            " until it is copied there (server stopped: python server.py desk migrate"
            " --data-dir %s --redis URL)",
            path,
            path.parent,
        )
    return behind
