"""Fuzz of every socket.io event of ``/parley``: garbage from real python-socketio clients.

Each hypothesis example opens a fresh mediation (mediator and two parties; the mediator and
party A connected) and sends a batch of cases, each from the mediator or party A:

* ``call``: the client library's own ``call`` — every event the namespace handles (``command``
  with every command type of rooms/commands.py, server-only ones included), reserved and unknown
  names, with junk payloads. The library serialises NaN/Infinity as the bare JSON tokens, lone
  surrogates as ``\\udXXX`` escapes and bytes as binary attachments, so those reach the server.
* ``raw``: socket.io packets written straight onto the engine.io connection, for what the client
  library will not produce: non-string event names, extra arguments, broken JSON, binary events
  whose attachments never come, acks for nothing.

The oracle is in conftest.py. The rate limiter of each fuzzing connection is raised (a real
``RateLimiter`` with a high rate) so that the cases reach the handlers instead of all being
answered ``rate_limited``; the limiter itself is tested in tests/integration/signaling.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys

import msgspec
import pytest
import socketio
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from rooms.commands import COMMAND_TYPES
from server import CONFIG, SIO
from signaling.namespace import NAMESPACE
from signaling.ratelimit import RateLimiter

from .conftest import Findings, Ledger, junk, text, unexpected

SEED = 20261130
BATCH = 100  # cases per example
EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "72"))  # default: 7,200 cases
SLOW_EXAMPLES = 600
TRACE = bool(os.environ.get("PARLEY_FUZZ_TRACE"))
SURVEY = os.environ.get("PARLEY_FUZZ_SURVEY")  # a file to append findings to
HANDLED = ["offer", "command", "media", "invitation", "agreement", "esign", "otp", "leave"]
RESERVED = ["connect", "disconnect", "message", "connect_error", "*", "", "handle_offer"]
UNKNOWN = ["no_such_event", "__class__", "__init__", "offer ", "OFFER", "trigger_event", "x" * 300]

PLACEHOLDERS = ["$M", "$A", "$B"]  # the session's mediator and parties, filled in when sent

# For a command field of this name, values that may pass the schema (and some that nearly do).
PLAUSIBLE: dict[str, list] = {
    "participant": PLACEHOLDERS + ["p-00000000"],
    "caucus": ["c1", "side-a", "x" * 32, "X"],
    "seconds": [0, 9, 10, 600, 14_400, 14_401],
    "reason": ["", "left", "transport_lost", "done"],
    "side": ["A", "B", "Z"],
    "name": ["Duty Lawyer", "doc.pdf", "n" * 81],
    "space": ["joint", "waiting", "caucus:c1", "gone"],
    "method": ["video", "document", "in_person", "one_time_code", "dna"],
    "topic": ["online_mediation", "session_rules", "recording", "x"],
    "given": [True, False],
    "text": ["hello", "名字", "t" * 2001],
    "document": ["d-0123456789abcdef", "d-zz"],
    "mime": ["application/pdf", "image/png", "text/html"],
    "size": [-1, 1, 20 * 1024 * 1024 + 1],
    "sha256": ["0" * 64, "g" * 64],
    "case_type": ["debt", "divorce", "DEBT", "x" * 33],
    "language": ["zh-CN", "en", "fr"],
    "cid": ["c-1", "c-2", "bad cid!", "x" * 65],
}
LISTS = {"participants": PLACEHOLDERS, "signers": PLACEHOLDERS, "terms": ["pay 5", "", "t" * 2001]}


def plausible(rnd: random.Random, name: str):
    if name in PLAUSIBLE:
        return rnd.choice(PLAUSIBLE[name])
    if name in LISTS:
        return [rnd.choice(LISTS[name]) for _ in range(rnd.randint(0, 3))]
    if name == "events":
        kinds = ["agreement.sealed", "signature.embedded", "nope"]
        return [{"type": rnd.choice(kinds), "data": junk(rnd)} for _ in range(rnd.randint(0, 2))]
    return junk(rnd)


def field_value(rnd: random.Random, name: str):
    return plausible(rnd, name) if rnd.random() < 0.7 else junk(rnd)


def command(rnd: random.Random) -> dict:
    """A command of any type of rooms/commands.py, each field present or not, plausible or junk."""
    kind = rnd.choice(sorted(COMMAND_TYPES))
    cmd: dict = {"type": kind if rnd.random() < 0.95 else junk(rnd)}
    for f in msgspec.structs.fields(COMMAND_TYPES[kind]):
        if rnd.random() < 0.85:
            cmd[f.name] = field_value(rnd, f.name)
    if rnd.random() < 0.05:
        cmd[text(rnd)] = junk(rnd)
    return cmd


def envelope(rnd: random.Random, body: dict):
    """``{v: 1, ...body}`` mostly, every kind of broken envelope sometimes."""
    pick = rnd.random()
    if pick < 0.08:
        return junk(rnd)
    out = {"v": 1 if pick < 0.85 else junk(rnd), **body}
    if rnd.random() < 0.05:
        out[text(rnd)] = junk(rnd)
    if rnd.random() < 0.05 and len(out) > 1:
        out.pop(rnd.choice(sorted(out, key=str)))
    return out


def optional(rnd: random.Random, fields: dict) -> dict:
    return {k: make(rnd) for k, make in fields.items() if rnd.random() < 0.7}


PAYLOADS = {
    "offer": lambda r: envelope(r, {"sdp": text(r) if r.random() < 0.6 else junk(r)}),
    "command": lambda r: envelope(
        r,
        {"cmd": command(r) if r.random() < 0.9 else junk(r)}
        | ({"cid": field_value(r, "cid")} if r.random() < 0.3 else {}),
    ),
    "media": lambda r: envelope(r, {"video_paused": r.choice([True, False, junk(r)])}),
    "invitation": lambda r: envelope(r, {"participant": field_value(r, "participant")}),
    "agreement": lambda r: envelope(
        r,
        {"action": r.choice(["draft"] * 6 + ["seal", "freeze", "x", ""])}
        | optional(
            r,
            {
                "case_type": lambda r: field_value(r, "case_type"),
                "language": lambda r: field_value(r, "language"),
                "terms": lambda r: field_value(r, "terms"),
            },
        ),
    ),
    "esign": lambda r: envelope(
        r,
        {"action": r.choice(["challenge", "enrol", "prepare", "sign", "decline", "x"])}
        | optional(r, {"request": junk, "reply": junk, "reason": text}),
    ),
    "otp": lambda r: envelope(
        r,
        {"action": r.choice(["send", "verify", "x"])}
        | optional(
            r,
            {
                "participant": lambda r: field_value(r, "participant"),
                "email": lambda r: r.choice(["a@example.org", text(r)]),
                "code": lambda r: r.choice(["123456", "12345", "abcdef", text(r)]),
            },
        ),
    ),
    # a valid leave ends the participant's part in the batch: mostly broken ones
    "leave": lambda r: envelope(r, {"reason": text(r)}) if r.random() < 0.1 else junk(r),
}

# Raw socket.io packets. ``{id}`` becomes a fresh ack id, ``{deep}`` 5,000 nested arrays.
RAW_WITH_ACK = [
    '2/parley,{id}[5,{{"v":1}}]',
    "2/parley,{id}[null,{{}}]",
    "2/parley,{id}[true]",
    '2/parley,{id}[["offer"],{{}}]',
    '2/parley,{id}[{{"event":"offer"}},{{}}]',
    "2/parley,{id}[1.5e999,{{}}]",
    '2/parley,{id}["offer",{{"v":1,"sdp":NaN}}]',
    '2/parley,{id}["offer",{{"v":Infinity,"sdp":"x"}}]',
    '2/parley,{id}["command",{{"v":1,"cmd":{{"type":"chat","text":"\\ud800"}}}}]',
    '2/parley,{id}["command",{{"v":1,"cmd":{{"type":"chat","text":-Infinity}}}}]',
    '2/parley,{id}["command",{{"v":1,"cmd":{{"type":"\\u0000"}}}}]',
    '2/parley,{id}["offer",{{"v":1,"sdp":"v=0"}},{{"extra":1}}]',
    '2/parley,{id}["offer"]',
    '2/parley,{id}["media",[1,2,3]]',
    '2/parley,{id}["\\ud800",{{}}]',
    '2/parley,{id}["connect",{{}}]',
    '2/parley,{id}["disconnect",{{"v":1}}]',
    '2/parley,{id}["leave",{{"v":1,"reason":"\\udc00"}}]',
    '2/parley,{id}["command",{{"v":1,"cmd":{deep}}}]',
]
RAW_NO_ACK = [
    '2/parley,["offer",{{"v":1}}]',
    "2/parley,{id}[",
    "2/parley,{id}",
    "2/parley,",
    "2/parley,{id}{{}}",
    '2/parley,{id}"offer"',
    "2/parley,{id}[]",
    "2/parley,{id}{deep}",
    '2/nowhere,{id}["offer",{{}}]',
    '3/parley,{id}["ack for nothing"]',
    '5-/parley,{id}["offer",{{"_placeholder":true,"num":0}}]',
    '51-/parley,{id}["offer",{{"_placeholder":true,"num":7}}]',
    '5x-/parley,{id}["offer"]',
    "9",
    "",
    '4/parley,{{"message":"client error"}}',
]


def raw(rnd: random.Random) -> tuple[str, bool]:
    pick = rnd.random()
    if pick < 0.4:
        return rnd.choice(RAW_WITH_ACK), True
    if pick < 0.6:
        return rnd.choice(RAW_NO_ACK), False
    # a junk payload as JSON text (NaN, Infinity, \\u escapes of surrogates) to a handled event
    body = json.dumps(junk(rnd, binary=False)).replace("{", "{{").replace("}", "}}")
    return f'2/parley,{{id}}["{rnd.choice(HANDLED)}",{body}]', True


WEIGHTS = {"command": 5, "agreement": 2, "esign": 2, "leave": 0.3}


def case(rnd: random.Random) -> tuple:
    """(who, mode, event, payload): one thing a phone sends."""
    who = rnd.choice(["$M", "$A"])
    pick = rnd.random()
    if pick < 0.12:
        return who, "raw", raw(rnd), None
    if pick < 0.2:
        return who, "call", rnd.choice(RESERVED + UNKNOWN), junk(rnd)
    event = rnd.choices(HANDLED, [WEIGHTS.get(e, 1) for e in HANDLED])[0]
    return who, "call", event, PAYLOADS[event](rnd)


# Escapes found by this fuzz that are still open. While listed, the batches leave such cases out
# of the oracle and count them; each has an exact repro below, run as xfail(strict=True): when the
# fix lands that repro passes, fails the suite, and the entry must go. (None open now: the last,
# a command whose cmd.type was a list or object, is refused with invalid_message.)
OPEN_ESCAPES: dict = {}
REPROS = [
    # (name, who, event, payload, open escape it shows or None)
    (
        "command type list",
        "$A",
        "command",
        {"v": 1, "cmd": {"type": []}},
        None,
    ),
    (
        "command type dict",
        "$M",
        "command",
        {"v": 1, "cmd": {"type": {}}},
        None,
    ),
    ("NaN in offer", "$A", "offer", {"v": 1, "sdp": math.nan}, None),
    (
        "lone surrogate chat",
        "$A",
        "command",
        {"v": 1, "cmd": {"type": "chat", "text": "\ud800"}},
        None,
    ),
    ("Infinity version", "$M", "media", {"v": math.inf, "video_paused": True}, None),
    ("NUL event name", "$A", "\x00", {"v": 1}, None),
    ("reserved event", "$A", "disconnect", {"v": 1}, None),
]


def _fill(value, ids: dict[str, str]):
    """Replace the $M/$A/$B placeholders with the session's participant ids."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


CLOSED = "<connection closed>"
NO_REPLY = "<no reply>"
REPLY_WAIT = 10.0


class Phone:
    """One fuzzing participant: a real python-socketio client with a raised rate limit.

    A reply is awaited until it comes or the server closes the connection (what it does on a
    packet it will not parse); a connection still open without a reply is a finding.
    """

    def __init__(self, running, token: str) -> None:
        self.running, self.token = running, token
        self.sio: socketio.AsyncClient | None = None
        self.closed = asyncio.Event()
        self.gone = False

    async def ensure(self) -> bool:
        if self.gone:
            return False
        if self.sio is not None and self.sio.connected and not self.closed.is_set():
            return True
        if self.sio is not None:
            await self.sio.disconnect()
        try:
            self.sio, _ = await self.running.client(self.token)
        except (socketio.exceptions.ConnectionError, AssertionError):
            self.gone = True  # left or removed: its token no longer connects
            return False
        closed = self.closed = asyncio.Event()
        self.sio.on("disconnect", lambda *a: closed.set(), namespace=NAMESPACE)
        ns = self.running.app[SIO].namespace_handlers[NAMESPACE]
        ns._limits[self.sio.get_sid(NAMESPACE)] = RateLimiter(rate=1e9, burst=1e9)
        return True

    def _reply_future(self) -> tuple[asyncio.Future, int]:
        reply = asyncio.get_running_loop().create_future()

        def answered(*args):
            if not reply.done():
                reply.set_result(args[0] if args else None)

        return reply, answered

    async def _wait(self, reply: asyncio.Future):
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {reply, closed}, timeout=REPLY_WAIT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if reply in done:
            return reply.result()
        return CLOSED if self.closed.is_set() else NO_REPLY

    async def call(self, event, payload):
        reply, answered = self._reply_future()
        await self.sio.emit(event, payload, namespace=NAMESPACE, callback=answered)
        return await self._wait(reply)

    async def raw(self, template: str, wants_ack: bool):
        """Write a socket.io packet as text; the ack (if one is asked for) comes back here."""
        reply, answered = self._reply_future()
        ack_id = self.sio._generate_ack_id(NAMESPACE, answered)
        deep = "[" * 5000 + "]" * 5000
        await self.sio.eio.send(template.format(id=ack_id, deep=deep))
        if wants_ack:
            return await self._wait(reply)
        # Nothing will answer: an ordinary call afterwards is the barrier.
        return await self.call("media", {"v": 1, "video_paused": False})


class Table:
    """A fresh mediation (mediator, parties A and B) with the mediator and A connected."""

    def __init__(self, running) -> None:
        self.running = running
        state = running.mediation(parties=2)
        self.ids, self.phones = {}, {}
        for key, role, index in (("$M", "mediator", 0), ("$A", "party", 0), ("$B", "party", 1)):
            pid, token = running.token(state, role, index)
            self.ids[key] = pid
            if key != "$B":
                self.phones[key] = Phone(running, token)

    async def close(self) -> None:
        for phone in self.phones.values():
            if phone.sio is not None and phone.sio.connected:
                await phone.sio.disconnect()


async def run_batch(running, server_errors, ledger: Ledger, cases, findings: Findings) -> None:
    table = Table(running)
    for who, mode, event, payload in cases:
        if not await table.phones[who].ensure():  # left, removed or the session ended
            await table.close()
            table = Table(running)
            if not await table.phones[who].ensure():
                findings.add(f"{who} connect", "a fresh participant could not connect")
                continue
        phone = table.phones[who]
        known = [k for k, (hit, _) in OPEN_ESCAPES.items() if hit(mode, event, payload)]
        if known:
            findings.known += 1
            continue
        ledger.changes()  # the session's creation and connections are the test's own doing
        findings.cases += 1
        if TRACE:
            print(who, mode, repr(event)[:80], repr(payload)[:200], file=sys.stderr, flush=True)
        if mode == "call":
            payload = _fill(payload, table.ids)
            repr_case = f"{who} call {event!r} {payload!r}"[:600]
            reply = await phone.call(event, payload)
        else:
            template, wants_ack = event
            repr_case = f"{who} raw {template!r}"[:600]
            reply = await phone.raw(template, wants_ack)
        ok = isinstance(reply, dict) and reply.get("ok") is True
        if isinstance(reply, dict) and (reply.get("error") or {}).get("code") == "internal":
            findings.add(repr_case, "internal")
        if reply == NO_REPLY:
            findings.add(repr_case, "no reply")
        for record in server_errors.take():
            findings.add(repr_case, f"server logged {record}")
        bad = unexpected(ledger.changes(), ok)
        if bad:
            findings.add(repr_case, f"ledger changed without ok ({reply!r:.120}): {bad}")
    await table.close()
    for record in server_errors.take():
        findings.add("(after the batch)", f"server logged {record}")


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as out:
        out.writelines(line + "\n" for line in lines)


# No shrinking: a failing batch already names each failing case with its exact payload.
_SETTINGS = dict(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_LEDGERS: dict[int, Ledger] = {}


async def _example(running, server_errors, cases) -> None:
    if id(running) not in _LEDGERS:
        _LEDGERS.clear()
        _LEDGERS[id(running)] = Ledger(running.app[CONFIG].data_dir / "ledger.sqlite3")
    findings = Findings()
    await run_batch(running, server_errors, _LEDGERS[id(running)], cases, findings)
    assert findings.cases + findings.known == BATCH, "some cases never reached the server"
    if SURVEY:  # collect every failure of the whole run instead of stopping at the first batch
        _append(SURVEY, findings.lines)
        return
    findings.check()


@seed(SEED)
@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(batch_seed=st.integers(0, 2**64))
async def test_fuzz_every_socket_event(running, server_errors, batch_seed):
    rnd = random.Random(batch_seed)
    await _example(running, server_errors, [case(rnd) for _ in range(BATCH)])


@pytest.mark.slow
@seed(SEED + 1)
@settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
@given(batch_seed=st.integers(0, 2**64))
async def test_fuzz_every_socket_event_long(running, server_errors, batch_seed):
    rnd = random.Random(batch_seed)
    await _example(running, server_errors, [case(rnd) for _ in range(BATCH)])


@pytest.mark.parametrize(
    "name,who,event,payload",
    [
        pytest.param(
            *r[:4],
            id=r[0],
            marks=[pytest.mark.xfail(strict=True, reason=OPEN_ESCAPES[r[4]][1])] if r[4] else [],
        )
        for r in REPROS
    ],
)
async def test_escape_repro(running, server_errors, name, who, event, payload):
    """Each escape the fuzz found, as one exact case through the same oracle."""
    ledger = Ledger(running.app[CONFIG].data_dir / "ledger.sqlite3")
    table = Table(running)
    assert await table.phones[who].ensure()
    ledger.changes()
    reply = await table.phones[who].call(event, payload)
    problems = []
    if reply == NO_REPLY:
        problems.append("no reply")
    if isinstance(reply, dict) and (reply.get("error") or {}).get("code") == "internal":
        problems.append("internal")
    problems += server_errors.take()
    ok = isinstance(reply, dict) and reply.get("ok") is True
    problems += [f"ledger {c}" for c in unexpected(ledger.changes(), ok)]
    await table.close()
    ledger.close()
    assert not problems, f"{name}: {reply!r:.200} {problems}"
