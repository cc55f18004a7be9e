"""The duty-lawyer desk's records on Redis, for several nodes (docs/scaling.md, "The desk on
Redis").

``RedisDeskStore`` has the methods of ``desk.store.DeskStore`` and applies the same rules (the
checks, the columns and their defaults, what a log entry says are that module's), so the desk's
engine and pages run on either. On Redis a hall's queue is one queue whichever node or worker a
citizen's page and a lawyer's desk reach: a ticket made through one node is picked up through
another, exactly once.

Keys (``prefix`` ``parley:desk:``):

* ``points`` (hash: id → JSON), ``shifts`` (hash: id → JSON) with ``shift_ends`` (sorted set by
  end: the shifts not over yet without reading the past ones), ``lawyers`` (hash: username →
  JSON status and since);
* ``ticket:<id>``: a hash, one field per column (JSON values), so a page's poll (``touch``)
  writes ``last_seen`` alone and never overwrites a change made beside it;
* the ticket indexes, kept in the same transaction as the ticket: ``tickets`` (sorted set by
  queue time), ``live`` (waiting and serving), ``callbacks``, ``secrets`` (hash: SHA-256 of the
  citizen's secret → id), ``phone:<sha256>`` and ``session:<id>`` (sets), ``done:<point>`` and
  ``done:@any`` (sorted sets by end: the recent handling times);
* ``log`` and ``log:<ticket>`` (lists: every entry, and a ticket's own), ``documents:<ticket>``,
  ``legal_aid`` (a list, newest first); ``seq:<what>`` the ids.

A change to a ticket (``update``, ``rotate_secret``) watches the ticket's hash: the state is
read, checked (``expect``), and the ticket, its indexes and its log entry written in one
MULTI/EXEC that fails if another node changed the ticket meanwhile, and is then tried again on
what that node wrote. So two lawyers picking up one citizen on two nodes: one ``picked``, one
``conflict``, as SQLite's transaction gives on one machine.

A blocking client with 1 s timeouts, as the accounts and the codes: the engine calls the store
from plain methods. While Redis is away a call raises ``DeskError("unavailable")`` (503).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Iterator

import redis

from cluster.client import sync_client
from desk.errors import DeskError
from desk.roster import Shift
from desk.store import (
    LIVE,
    TICKET_COLUMNS,
    TICKET_DEFAULTS,
    TICKET_REQUIRED,
    Point,
    Ticket,
    check_fields,
    check_shift,
    check_status,
    checked_point,
    queued_data,
    secret_hash,
    update_data,
)

RETRIES = 100  # a change retried this often on a ticket others keep changing is refused

# KEYS[1] the ticket; ARGV[1] the time: a poll of a ticket that exists (UPDATE … WHERE id=?)
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
end
"""


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except redis.RedisError:
        raise DeskError("unavailable", "the desk cannot be reached now; try again") from None


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RedisDeskStore:
    def __init__(self, client: redis.Redis, *, prefix: str = "parley:desk:") -> None:
        self._redis = client
        self.prefix = prefix
        self._touch = client.register_script(_TOUCH)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "parley:desk:") -> RedisDeskStore:
        client = sync_client(url)
        return cls(client, prefix=prefix)

    def close(self) -> None:
        self._redis.close()

    def _k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    # -- points and shifts ----------------------------------------------------------------------
    def add_point(self, pid: str, name: str, hours: str, address: str = "") -> Point:
        point = checked_point(pid, name, hours, address)
        with _reachable():
            self._put_point(self._redis, point)
        return point

    def _put_point(self, client, point: Point) -> None:
        value = json.dumps([point.name, point.hours, point.address], ensure_ascii=False)
        client.hset(self._k("points"), point.id, value)

    def points(self) -> list[Point]:
        with _reachable():
            held = self._redis.hgetall(self._k("points"))
        return sorted((Point(k.decode(), *json.loads(v)) for k, v in held.items()), key=_id)

    def point(self, pid: str) -> Point | None:
        if not isinstance(pid, str):
            return None
        with _reachable():
            held = self._redis.hget(self._k("points"), pid)
        return Point(pid, *json.loads(held)) if held is not None else None

    def add_shift(self, lawyer: str, point: str, start: float, end: float) -> Shift:
        check_shift(self, point, start, end)
        with _reachable():
            sid = self._redis.incr(self._k("seq", "shifts"))
            shift = Shift(sid, lawyer, point, float(start), float(end))
            pipe = self._redis.pipeline(transaction=True)
            self._put_shift(pipe, shift)
            pipe.execute()
        return shift

    def _put_shift(self, pipe, shift: Shift) -> None:
        value = json.dumps([shift.lawyer, shift.point, shift.start, shift.end])
        pipe.hset(self._k("shifts"), shift.id, value)
        pipe.zadd(self._k("shift_ends"), {shift.id: shift.end})

    def remove_shift(self, shift_id: int) -> None:
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._k("shifts"), shift_id)
            pipe.zrem(self._k("shift_ends"), shift_id)
            pipe.execute()

    def shifts(self, after: float = 0.0) -> list[Shift]:
        with _reachable():
            ids = self._redis.zrangebyscore(self._k("shift_ends"), f"({after!r}", "+inf")
            held = self._redis.hmget(self._k("shifts"), ids) if ids else []
        out = [Shift(int(i), *json.loads(v)) for i, v in zip(ids, held, strict=True) if v]
        return sorted(out, key=lambda s: (s.start, s.id))

    # -- lawyers --------------------------------------------------------------------------------
    def set_status(self, lawyer: str, status: str, now: float) -> None:
        check_status(status)
        with _reachable():
            self._redis.hset(self._k("lawyers"), lawyer, json.dumps([status, now]))

    def statuses(self) -> dict[str, str]:
        with _reachable():
            held = self._redis.hgetall(self._k("lawyers"))
        return {k.decode(): json.loads(v)[0] for k, v in held.items()}

    # -- tickets --------------------------------------------------------------------------------
    def add_ticket(self, *, now: float, **values) -> tuple[Ticket, str]:
        """A new ticket and its secret (returned once; only the hash is kept)."""
        secret = secrets.token_urlsafe(24)
        values = {"secret_hash": secret_hash(secret), "queued_at": now, "last_seen": now, **values}
        check_fields(values)
        values = _columns(values)
        missing = [c for c in TICKET_REQUIRED if values.get(c) is None]
        if missing:
            raise ValueError(f"missing ticket fields {missing}")
        with _reachable():
            tid = self._redis.incr(self._k("seq", "tickets"))
            ticket = {**TICKET_DEFAULTS, **values, "id": tid}
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._k("ticket", tid), mapping=_encode(ticket))
            self._index(pipe, None, ticket)
            self._append_log(
                pipe, now, tid, values.get("lawyer") or "citizen", "queued", queued_data(values)
            )
            pipe.execute()
        return Ticket(**ticket), secret

    def rotate_secret(self, tid: int) -> str:
        """A returning citizen on a new device gets a new address; the old one stops working."""
        secret = secrets.token_urlsafe(24)
        self._change(tid, {"secret_hash": secret_hash(secret)}, expect=(), log=None)
        return secret

    def ticket(self, tid: int) -> Ticket | None:
        with _reachable():
            held = self._redis.hgetall(self._k("ticket", tid))
        return _ticket(held)

    def ticket_by_secret(self, secret: object) -> Ticket | None:
        if not isinstance(secret, str) or not 10 <= len(secret) <= 64:
            return None
        with _reachable():
            tid = self._redis.hget(self._k("secrets"), secret_hash(secret))
        return self.ticket(int(tid)) if tid is not None else None

    def _tickets(self, ids) -> list[Ticket]:
        with _reachable():
            pipe = self._redis.pipeline(transaction=False)
            for tid in ids:
                pipe.hgetall(self._k("ticket", int(tid)))
            found = [_ticket(h) for h in pipe.execute()] if ids else []
        return [t for t in found if t is not None]

    def live(self) -> list[Ticket]:
        with _reachable():
            ids = self._redis.smembers(self._k("live"))
        return sorted(self._tickets(ids), key=_id)

    def callbacks(self) -> list[Ticket]:
        with _reachable():
            ids = self._redis.smembers(self._k("callbacks"))
        tickets = self._tickets(ids)
        # ORDER BY callback_at, id: SQLite puts a missing time first
        return sorted(tickets, key=lambda t: (t.callback_at is not None, t.callback_at or 0, t.id))

    def for_phone(self, phone: str) -> list[Ticket]:
        if not phone:
            return []
        with _reachable():
            ids = self._redis.smembers(self._k("phone", _hashed(phone)))
        return sorted((t for t in self._tickets(ids) if t.phone == phone), key=_id)

    def for_session(self, session: str) -> list[Ticket]:
        with _reachable():
            ids = self._redis.smembers(self._k("session", session))
        return sorted((t for t in self._tickets(ids) if t.session == session), key=_id)

    def since(self, since: float) -> list[Ticket]:
        with _reachable():
            ids = self._redis.zrangebyscore(self._k("tickets"), since, "+inf")
        return sorted(self._tickets(ids), key=_id)

    def handling_times(self, point: str | None, limit: int = 20) -> list[float]:
        """Talk times of the last consultations at ``point`` (any point for None), oldest first."""
        key = self._k("done", point if point is not None else "@any")
        with _reachable():
            ids = self._redis.zrevrange(key, 0, limit - 1)
        latest = sorted(self._tickets(ids), key=lambda t: (t.ended_at, t.id), reverse=True)
        return [t.ended_at - t.picked_at for t in reversed(latest)]

    def update(
        self, tid: int, *, actor: str, event: str | None, now: float, expect: tuple = (), **values
    ) -> Ticket:
        """Change a ticket (only from a state in ``expect`` when given) and log ``event``."""
        check_fields(values)
        log = (now, actor, event, update_data(values)) if event else None
        return self._change(tid, _columns(values), expect=expect, log=log)

    def _change(self, tid: int, values: dict, *, expect: tuple, log: tuple | None) -> Ticket:
        key = self._k("ticket", tid)
        with _reachable():
            for _ in range(RETRIES):
                with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        old = _decode(pipe.hgetall(key))
                        if not old:
                            raise DeskError("not_found", "no such ticket")
                        if expect and old["state"] not in expect:
                            raise DeskError("conflict", f"the ticket is {old['state']}")
                        new = {**old, **values}
                        pipe.multi()
                        if values:
                            pipe.hset(key, mapping=_encode(values))
                        self._index(pipe, old, new)
                        if log is not None:
                            ts, actor, event, data = log
                            self._append_log(pipe, ts, tid, actor, event, data)
                        pipe.execute()
                        return Ticket(**{c: new[c] for c in TICKET_COLUMNS})
                    except redis.WatchError:
                        continue
        raise DeskError("conflict", "the ticket kept changing; try again")

    def _index(self, pipe, old: dict | None, new: dict) -> None:
        """The ticket's index entries, from what it was (``old``) to what it is (``new``)."""
        tid = new["id"]
        old = old or {}
        pipe.zadd(self._k("tickets"), {tid: new["queued_at"]})
        for name, member in (
            ("live", new["state"] in LIVE),
            ("callbacks", new["state"] == "callback"),
        ):
            (pipe.sadd if member else pipe.srem)(self._k(name), tid)
        if old.get("secret_hash") and old["secret_hash"] != new["secret_hash"]:
            pipe.hdel(self._k("secrets"), old["secret_hash"])
        if new["secret_hash"]:
            pipe.hset(self._k("secrets"), new["secret_hash"], tid)
        if old.get("phone") and old["phone"] != new["phone"]:
            pipe.srem(self._k("phone", _hashed(old["phone"])), tid)
        if new["phone"]:
            pipe.sadd(self._k("phone", _hashed(new["phone"])), tid)
        if old.get("session") and old["session"] != new["session"]:
            pipe.srem(self._k("session", old["session"]), tid)
        if new["session"]:
            pipe.sadd(self._k("session", new["session"]), tid)
        done = (
            new["kind"] == "citizen"
            and new["state"] == "done"
            and new["picked_at"] is not None
            and new["ended_at"] is not None
        )
        for point in {old.get("point"), new["point"]} - {None}:
            pipe.zrem(self._k("done", point), tid)
        pipe.zrem(self._k("done", "@any"), tid)
        if done:
            if new["point"] is not None:
                pipe.zadd(self._k("done", new["point"]), {tid: new["ended_at"]})
            pipe.zadd(self._k("done", "@any"), {tid: new["ended_at"]})

    def touch(self, tid: int, now: float) -> None:
        """The citizen's page polled: still there (not logged: it happens every few seconds)."""
        with _reachable():
            self._touch([self._k("ticket", tid)], [json.dumps(now)])

    # -- the log --------------------------------------------------------------------------------
    def _append_log(self, pipe, ts: float, tid: int | None, actor: str, event: str, data: str):
        row = json.dumps([ts, tid, actor, event, data], ensure_ascii=False)
        pipe.rpush(self._k("log"), row)
        if tid is not None:
            pipe.rpush(self._k("log", tid), row)

    def log(self, tid: int | None, actor: str, event: str, now: float, **data) -> None:
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            self._append_log(pipe, now, tid, actor, event, json.dumps(data, ensure_ascii=False))
            pipe.execute()

    def log_rows(self, tid: int | None = None) -> list[tuple]:
        key = self._k("log") if tid is None else self._k("log", tid)
        with _reachable():
            rows = self._redis.lrange(key, 0, -1)
        return [tuple(json.loads(r)) for r in rows]

    # -- documents the citizen attached -----------------------------------------------------------
    def add_document(self, tid: int, doc: dict, now: float) -> None:
        """A file the citizen attached to the ticket (the bytes are beside the database)."""
        keep = {k: doc[k] for k in ("id", "name", "mime", "size", "sha256")}
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.rpush(self._k("documents", tid), json.dumps(keep, ensure_ascii=False))
            self._append_log(
                pipe, now, tid, "citizen", "document_added", json.dumps(doc, ensure_ascii=False)
            )
            pipe.execute()

    def documents(self, tid: int) -> list[dict]:
        with _reachable():
            return [json.loads(d) for d in self._redis.lrange(self._k("documents", tid), 0, -1)]

    # -- legal-aid cases ------------------------------------------------------------------------
    def add_legal_aid(self, ticket: Ticket, lawyer: str, summary: str, now: float) -> int:
        """A consultation converted into a legal-aid case: the hall's legal-aid list."""
        with _reachable():
            cid = self._redis.incr(self._k("seq", "legal_aid"))
            case = {
                "id": cid,
                "ts": now,
                "ticket": ticket.id,
                "point": ticket.point,
                "lawyer": lawyer,
                "name": ticket.name,
                "phone": ticket.phone,
                "topic": ticket.topic,
                "summary": summary,
                "state": "open",
            }
            self._redis.lpush(self._k("legal_aid"), json.dumps(case, ensure_ascii=False))
        return cid

    def legal_aid_cases(self, limit: int = 200) -> list[dict]:
        with _reachable():
            rows = self._redis.lrange(self._k("legal_aid"), 0, limit - 1)
        return [json.loads(r) for r in rows]

    # -- moving a one-machine desk here --------------------------------------------------------
    def copy_from(self, source) -> dict[str, int]:
        """Everything of a one-machine desk (a ``DeskStore``), ids kept, for ``server.py desk
        migrate`` (cluster/desk_migrate.py): one MULTI/EXEC, so all or nothing; refused
        (``conflict``) when this desk holds anything already. Returns what was copied."""
        points = source.points()
        shifts = source.shifts(float("-inf"))
        lawyers = source.rows("SELECT username, status, since FROM lawyers ORDER BY username")
        tickets = source.since(float("-inf"))
        logs = source.log_rows()
        documents = {t.id: source.documents(t.id) for t in tickets}
        cases = source.legal_aid_cases(limit=2**62)  # newest first, as kept here
        kept = [self._k(n) for n in ("points", "shifts", "lawyers", "log", "legal_aid")]
        kept += [self._k("seq", n) for n in ("tickets", "shifts", "legal_aid")]
        with _reachable(), self._redis.pipeline(transaction=True) as pipe:
            pipe.watch(*kept)
            if pipe.exists(*kept):
                raise DeskError("conflict", "the desk in Redis holds records already")
            pipe.multi()
            for point in points:
                self._put_point(pipe, point)
            for shift in shifts:
                self._put_shift(pipe, shift)
            for username, status, since in lawyers:
                pipe.hset(self._k("lawyers"), username, json.dumps([status, since]))
            for t in tickets:
                ticket = dataclasses.asdict(t)
                pipe.hset(self._k("ticket", t.id), mapping=_encode(ticket))
                self._index(pipe, None, ticket)
                for doc in documents[t.id]:
                    pipe.rpush(self._k("documents", t.id), json.dumps(doc, ensure_ascii=False))
            for ts, tid, actor, event, data in logs:
                self._append_log(pipe, ts, tid, actor, event, data)
            for case in cases:
                pipe.rpush(self._k("legal_aid"), json.dumps(case, ensure_ascii=False))
            for name, items in (("tickets", tickets), ("shifts", shifts)):
                if items:
                    pipe.set(self._k("seq", name), max(i.id for i in items))
            if cases:
                pipe.set(self._k("seq", "legal_aid"), max(c["id"] for c in cases))
            try:
                pipe.execute()
            except redis.WatchError:
                raise DeskError("conflict", "the desk in Redis changed while copying") from None
        return {
            "service points": len(points),
            "shifts": len(shifts),
            "lawyers": len(lawyers),
            "tickets": len(tickets),
            "log entries": len(logs),
            "documents": sum(len(d) for d in documents.values()),
            "legal-aid cases": len(cases),
        }


def _id(item) -> object:
    return item.id


def _columns(values: dict) -> dict:
    """As SQLite keeps them: a bool is an INTEGER column's 0 or 1."""
    return {k: int(v) if isinstance(v, bool) else v for k, v in values.items()}


def _encode(values: dict) -> dict[str, str]:
    return {k: json.dumps(v, ensure_ascii=False) for k, v in values.items()}


def _decode(held: dict) -> dict:
    return {k.decode(): json.loads(v) for k, v in held.items()}


def _ticket(held: dict) -> Ticket | None:
    if not held:
        return None
    values = _decode(held)
    return Ticket(**{c: values.get(c, TICKET_DEFAULTS[c]) for c in TICKET_COLUMNS})
