"""Moving a data directory's ledger into Redis: a deployment that grows from one process
(``ledger.sqlite3``) to a cluster keeps every session it has (docs/scaling.md, "Moving to a
cluster").

Each session's events are appended to its Redis stream in order, through the Redis store's
own ``append`` (the same script and checks as a node's). Appending seals each event again, and
an event's hash covers only its contents and the previous hash, so a copied event has the same
hash as in SQLite: the source chain is verified before anything is written, and every copied
hash is compared with the source's after. A session already in Redis is kept when one of the
two is the beginning of the other (the rest of the source is appended: running the tool again
after an interruption finishes the job; a session that went on in the cluster is left as it
is) and refused when they differ; nothing of a refused session is written. Sessions not ended are listed as held by the node that will serve them (``owner``):
that node takes them back when it starts, as after its own restart (cluster/node.py), and the
people's links keep working (the server secret, in the data directory, is the cluster's).

The server must be stopped while this runs: the tool reads the SQLite file as it stands.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rooms.events import EventDraft
from rooms.ledger import SqliteLedgerStore, verify_chain

CHUNK = 500  # events per append: one script call each, so Redis is never blocked for long


@dataclass
class Report:
    copied: dict[str, int] = field(default_factory=dict)  # session -> events appended now
    present: list[str] = field(default_factory=list)  # already whole in Redis
    refused: dict[str, str] = field(default_factory=dict)  # session -> why
    live: list[str] = field(default_factory=list)  # not ended: listed under the owner


def _ended(events) -> bool:
    return any(e.type == "session.ended" for e in events)


def live_sessions(source) -> list[str]:
    """The sessions of ``source`` that have not ended (someone may still join them)."""
    return [s for s in source.session_ids() if not _ended(source.read(s))]


def migrate(source, target, hold=None) -> Report:
    """Copy every session of ``source`` (a LedgerStore) into ``target`` (a RedisLedgerStore
    in ``full`` mode); ``hold(session)`` lists a session not ended as the owner node's."""
    report = Report()
    for session in source.session_ids():
        events = source.read(session)
        problems = verify_chain(events)
        if problems:
            first = problems[0]
            report.refused[session] = (
                f"its chain breaks in SQLite at seq {first.seq}: {first.reason}"
            )
            continue
        have = target.read(session)
        if any(h.hash != e.hash for h, e in zip(have, events, strict=False)):
            report.refused[session] = "Redis already holds different events for it"
            continue
        # Redis may hold more: the session went on in the cluster after an earlier copy
        rest = events[len(have) :]
        for start in range(0, len(rest), CHUNK):
            batch = rest[start : start + CHUNK]
            drafts = [EventDraft(e.ts, e.actor, e.type, e.data) for e in batch]
            sealed = target.append(session, drafts, expected_seq=batch[0].seq - 1)
            if [e.hash for e in sealed] != [e.hash for e in batch]:  # not expected: say so, stop
                raise RuntimeError(f"session {session}: a copied event's hash differs")
        if rest:
            report.copied[session] = len(rest)
        else:
            report.present.append(session)
        if not _ended(events) and not _ended(have):
            report.live.append(session)
            if hold is not None:
                hold(session)
    return report


def ready(redis_url: str | None, path: Path, what: str, out: TextIO) -> bool:
    """A move into Redis has a Redis to go to and a file to copy; else says which is missing
    (the ledger's, the desk's and the visits database's ``migrate``)."""
    if not redis_url:
        print("invalid: name the cluster's Redis (--redis or PARLEY_REDIS_URL)", file=out)
        return False
    if not path.is_file():
        print(f"not_found: no {what} at {path}", file=out)
        return False
    return True


def run(
    data_dir: Path,
    redis_url: str | None,
    owner: str | None,
    out: TextIO = sys.stdout,
    *,
    prefix: str = "parley:",
) -> int:
    """``server.py ledger migrate``: 0 all copied, 1 some refused, 2 nothing done (says why)."""
    path = Path(data_dir) / "ledger.sqlite3"
    if not ready(redis_url, path, "ledger", out):
        return 2
    import redis

    from cluster.ledger import RedisLedgerStore
    from cluster.registry import Registry

    source = SqliteLedgerStore(path)
    client = redis.Redis.from_url(redis_url)
    target = None
    try:
        target = RedisLedgerStore(client, prefix=prefix)  # reads Redis's fsync setting
        live = live_sessions(source)
        if live and owner is None:
            print(
                f"invalid: {len(live)} session(s) not ended ({', '.join(live[:5])}"
                f"{', ...' if len(live) > 5 else ''}): name the node that will serve them with"
                " --owner; nothing was copied",
                file=out,
            )
            return 2
        hold = None
        if owner is not None:
            owned = Registry(client, owner, "", prefix=prefix)._owned_key(owner)
            hold = lambda session: client.sadd(owned, session)  # noqa: E731
        report = migrate(source, target, hold)
    except ValueError as exc:
        print(f"invalid: {exc}", file=out)
        return 2
    except redis.RedisError as exc:
        print(f"unavailable: Redis at {redis_url}: {exc}", file=out)
        return 2
    finally:
        source.close()
        if target is not None:
            target.close()
        client.close()
    for session, n in report.copied.items():
        print(f"copied  {session}: {n} event(s)", file=out)
    for session in report.present:
        print(f"present {session}: already in Redis", file=out)
    for session, why in report.refused.items():
        print(f"REFUSED {session}: {why}", file=out)
    if report.live:
        print(f"{len(report.live)} session(s) not ended, held by node {owner}", file=out)
    print(
        f"{len(report.copied)} copied, {len(report.present)} already there,"
        f" {len(report.refused)} refused",
        file=out,
    )
    return 1 if report.refused else 0
