"""Events: the facts a session is made of, chained by hashes so that edits show.

An ``EventDraft`` is what the domain decides; the ledger store turns drafts into ``Event``s by
giving each its ``seq``, the previous event's hash and its own hash. The hash covers every other
field in a canonical JSON encoding (keys sorted, compact), so any edited byte changes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

GENESIS = "0" * 64  # ``prev`` of the first event of every session


class EventDraft(msgspec.Struct, frozen=True):
    """An event before it has a place in the chain."""

    ts: float
    actor: str
    type: str
    data: dict[str, Any]


class Event(msgspec.Struct, frozen=True):
    session: str
    seq: int
    ts: float
    actor: str
    type: str
    data: dict[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def canonical_bytes(
    session: str, seq: int, ts: float, actor: str, type: str, data: dict, prev: str
) -> bytes:
    """The exact bytes an event hash is computed over."""
    body = {
        "session": session,
        "seq": seq,
        "ts": ts,
        "actor": actor,
        "type": type,
        "data": data,
        "prev": prev,
    }
    return msgspec.json.encode(body, order="sorted")


def event_hash(
    session: str, seq: int, ts: float, actor: str, type: str, data: dict, prev: str
) -> str:
    return hashlib.sha256(canonical_bytes(session, seq, ts, actor, type, data, prev)).hexdigest()


def seal(session: str, seq: int, prev: str, draft: EventDraft) -> Event:
    """Place a draft in the chain after ``prev``."""
    ts = float(draft.ts)  # an int would hash differently once read back from a REAL column
    digest = event_hash(session, seq, ts, draft.actor, draft.type, draft.data, prev)
    return Event(session, seq, ts, draft.actor, draft.type, draft.data, prev, digest)


def expected_hash(event: Event) -> str:
    return event_hash(
        event.session, event.seq, event.ts, event.actor, event.type, event.data, event.prev
    )
