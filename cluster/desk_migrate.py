"""``server.py desk migrate``: a one-machine desk (``desk.sqlite3``: the service points, the
shifts, the lawyers' statuses, every ticket with its log, the citizens' document list and the
legal-aid cases) copied into the cluster's Redis, where clustered nodes and workers keep the
desk (docs/scaling.md, "The desk on Redis").

Ids are kept, so the files the citizens attached (``<data>/desk-documents/<ticket>/``) and the
ledgers' desk steps still name the right ticket, and a citizen's page address (its secret's
hash is copied) goes on working. All or nothing, in one MULTI/EXEC; refused when the Redis desk
holds anything already (a second run changes nothing). The server must be stopped while this
runs: the tool reads the SQLite file as it stands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from desk.errors import DeskError


def run(
    data_dir: Path, redis_url: str | None, out: TextIO = sys.stdout, *, prefix: str = "parley:"
) -> int:
    """0 copied; 1 refused (Redis's desk is not empty); 2 nothing done (says why)."""
    if not redis_url:
        print("invalid: name the cluster's Redis (--redis or PARLEY_REDIS_URL)", file=out)
        return 2
    path = Path(data_dir) / "desk.sqlite3"
    if not path.is_file():
        print(f"not_found: no desk at {path}", file=out)
        return 2
    import redis

    from cluster.desk import RedisDeskStore
    from desk.store import DeskStore

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
