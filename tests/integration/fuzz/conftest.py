"""The fuzz's oracle and garbage: a real server (tests/integration/signaling/conftest.py's
``running``), the server's ERROR-level log records, and the ledger read from its SQLite file.

Oracle, for every case: no reply with code ``internal``, no HTTP 5xx, no ERROR record or
traceback from the server, and the ledger changes only when the reply says ok (events by the
``system`` actor that the clock or a closed transport produce are allowed at any time).
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from dataclasses import dataclass, field

import pytest

from tests.integration.signaling.conftest import Running, running, until  # noqa: F401

# Events the server records by itself, not because of the case's own request: the clock's caucus
# timers and safety hold, and a connection the server saw close.
SYSTEM_ANYTIME = {
    "caucus.expired",
    "caucus.timer_warning",
    "participant.moved",
    "participant.disconnected",
    "session.safety_hold",
}
CLIENT_LOGGERS = ("socketio.client", "engineio.client")


class ServerErrors(logging.Handler):
    """Every ERROR-or-worse record the server process logs (the test's own clients excluded)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        self.records.append(record)

    def take(self) -> list[str]:
        out = []
        for r in self.records:
            text = f"{r.name}: {r.getMessage()}"
            if r.exc_info and r.exc_info[1] is not None:
                text += f" [{type(r.exc_info[1]).__name__}: {r.exc_info[1]}]"
            out.append(text[:400])
        self.records.clear()
        return out


@pytest.fixture
def server_errors():
    handler = ServerErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


class Ledger:
    """The server's ledger as its file says, read through a connection of our own."""

    def __init__(self, path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA query_only=ON")
        self.heads = self._read_heads()

    def _read_heads(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT session, MAX(seq) FROM events GROUP BY session"))

    def changes(self) -> list[tuple[str, int, str, str]]:
        """(session, seq, actor, type) of every event appended since the last call."""
        heads = self._read_heads()
        new = []
        for session, head in heads.items():
            before = self.heads.get(session, 0)
            if head > before:
                new += self._db.execute(
                    "SELECT session, seq, actor, type FROM events"
                    " WHERE session = ? AND seq > ? ORDER BY seq",
                    (session, before),
                ).fetchall()
        self.heads = heads
        return new

    def close(self) -> None:
        self._db.close()


def unexpected(changes, ok: bool) -> list[tuple]:
    """The changes the case's outcome does not explain."""
    if ok:
        return []
    return [c for c in changes if not (c[2] == "system" and c[3] in SYSTEM_ANYTIME)]


@dataclass
class Findings:
    """What broke the oracle, one line per case with its exact repro."""

    lines: list[str] = field(default_factory=list)
    cases: int = 0
    known: int = 0  # cases of an escape still open (see OPEN_ESCAPES), left out

    def add(self, case: str, problem: str) -> None:
        self.lines.append(f"{problem} <- {case}")

    def check(self) -> None:
        assert not self.lines, f"{len(self.lines)} oracle failures:\n" + "\n".join(self.lines[:40])


# -- garbage ---------------------------------------------------------------------------------

SURROGATES = ["\ud800", "\udfff", "a\udc80b", "\ud83d", "\ude00x"]
NASTY_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\u202e\u200b",
    "../../etc/passwd",
    "%00",
    "<script>",
    "' OR 1=1 --",
    "名字",
    "😀" * 3,
    "\r\nX-Injected: 1",
    "p-00000000",
    "s-00000000",
    "__proto__",
    "null",
]
FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]
INTS = [0, -1, 1, 2, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30]


PLAIN = "abcxyz0123 _-.:/é名字😀"


def text(rnd: random.Random) -> str:
    """A string: short and plain, nasty, a lone surrogate, or huge."""
    pick = rnd.random()
    if pick < 0.4:
        return "".join(rnd.choice(PLAIN) for _ in range(rnd.randint(0, 12)))
    if pick < 0.8:
        return rnd.choice(SURROGATES + NASTY_TEXT)
    if pick < 0.95:
        return "".join(chr(rnd.randint(0, 0x10FFFF)) for _ in range(rnd.randint(1, 6)))
    return rnd.choice("x\x00é😀\ud800") * rnd.choice([300, 5_000, 40_000, 70_000])


def scalar(rnd: random.Random):
    kind = rnd.randrange(8)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.choice(INTS)
    if kind == 2:
        return rnd.randint(-(2**70), 2**70)
    if kind == 3:
        return rnd.choice(FLOATS)
    if kind == 4:
        return rnd.uniform(-1e6, 1e6)
    if kind == 5:
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 8)))
    return text(rnd)


def junk(rnd: random.Random, depth: int = 0, *, binary: bool = True):
    """Any JSON-ish value, nested, with the nasty scalars above (bytes only if ``binary``)."""
    pick = rnd.random()
    if depth < 3 and pick < 0.15:
        return [junk(rnd, depth + 1, binary=binary) for _ in range(rnd.randint(0, 4))]
    if depth < 3 and pick < 0.3:
        keys = ["v", "type", "cmd", "sdp"]
        return {
            (rnd.choice(keys) if rnd.random() < 0.3 else text(rnd)): junk(
                rnd, depth + 1, binary=binary
            )
            for _ in range(rnd.randint(0, 4))
        }
    value = scalar(rnd)
    if isinstance(value, bytes) and not binary:
        return value.decode("latin-1")
    return value


def pytest_collection_modifyitems(config, items):
    """The long fuzz runs (``*_long``, tens of thousands of cases) run when asked for with
    ``-m slow``; the default suite (and CI) runs the 10,200-case fuzz with the same seed."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    later = pytest.mark.skip(
        reason="the long fuzz run: ./scripts/test -m slow tests/integration/fuzz"
    )
    for item in items:
        if item.name.endswith("_long") and item.get_closest_marker("slow"):
            item.add_marker(later)
