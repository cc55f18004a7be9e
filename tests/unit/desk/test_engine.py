"""The desk's engine over a real ledger and store (SQLite, and Redis as when clustered), with a
simulated clock: the place kept after
the page went away, lapsing, a returning citizen on a new device, the mediation's call withdrawn
when someone comes in through the fallback link."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest

from cluster.desk import RedisDeskStore
from desk import queue as q
from desk.errors import DeskError
from desk.store import DeskStore
from rooms.commands import decode_command
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService
from signaling.desk import ConsultDesk
from signaling.desk_notify import SmsSpool
from signaling.tokens import TokenSigner
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def desk(tmp_path, request):
    """The engine on either store: the data directory's SQLite or a real redis-server."""
    clock = Clock()
    ledger = SqliteLedgerStore(tmp_path / "ledger.sqlite3")
    service = SessionService(ledger, clock=clock)
    if request.param == "sqlite":
        store = DeskStore(tmp_path)
    else:
        url = request.getfixturevalue("redis_server").url
        store = RedisDeskStore.from_url(url, prefix=request.getfixturevalue("redis_prefix"))
    store.add_point("hall", "Hall", "1-7 00:00-24:00")
    store.add_shift("li", "hall", T0 - 60, T0 + 8 * 3600)
    spool = SmsSpool(tmp_path / "sms")
    d = ConsultDesk(store, service, TokenSigner(b"k" * 32), notifier=spool, clock=clock)
    d.spool, d.tick = spool, clock
    yield d
    store.close()
    ledger.close()


def reopen(store, tmp_path):
    """The same store as a new process opens it: the same file, or the same Redis keys."""
    if isinstance(store, DeskStore):
        return DeskStore(tmp_path)
    kwargs = store._redis.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    return RedisDeskStore.from_url(url, prefix=store.prefix)


def queue(d, name, phone):
    asyncio.run(d.send_code("hall", phone, "1.2.3.4"))
    text = [t for to, _, t in d.spool.messages() if to == phone][-1]
    code = re.search(r"\b(\d{6})\b", text).group(1)
    req = SimpleNamespace(
        name=name,
        phone=phone,
        code=code,
        topic="debt",
        lang="zh",
        consent_online=True,
        consent_recording=False,
    )
    return d.join("hall", req, "1.2.3.4")


def test_the_place_is_kept_while_away_then_lapses(desk):
    a = queue(desk, "A", "13800138001")
    b = queue(desk, "B", "13800138002")
    assert desk.status(b)["position"] == 2
    desk.tick.now += q.PRESENCE_SECONDS + 60  # A's page went away; B keeps polling
    assert desk.status(b)["position"] == 2  # A's place is kept
    lawyer = SimpleNamespace(username="li", display_name="李律师")
    current = asyncio.run(desk.pickup(lawyer, None))
    assert current["name"] == "B"  # an absent caller is skipped, not served
    desk.tick.now += q.HOLD_SECONDS  # A still away: the hold ran out
    assert desk.status(a)["state"] == "abandoned"
    assert [r[3] for r in desk.store.log_rows(1)] == ["queued", "lapsed"]


def test_a_returning_citizen_on_another_device_gets_the_same_place(desk):
    a = queue(desk, "A", "13800138001")
    queue(desk, "B", "13800138002")
    desk.tick.now += q.PRESENCE_SECONDS + 30
    again = queue(desk, "A", "13800138001")  # verified again on another phone
    assert again != a
    with pytest.raises(DeskError):
        desk.status(a)  # the old address no longer works
    assert desk.status(again)["position"] == 1
    assert len(desk.store.live()) == 2


def test_the_mediations_call_is_withdrawn_when_the_fallback_link_is_used(desk):
    state = desk.service.create_session(
        "mediation",
        actor="staff:wang",
        title="Wage dispute",
        case_number="M-1",
        participants=[ParticipantSpec("M", "mediator"), ParticipantSpec("A", "party", "A")],
    )
    mid = next(p.id for p in state.participants.values() if p.role == "mediator")
    desk.service.execute(state.id, mid, decode_command({"type": "call_duty_lawyer", "name": "L"}))
    [t] = desk.store.live()
    assert (t.kind, t.point, t.name, t.question) == ("mediation", None, "Wage dispute", "M-1")
    assert desk.desk_state("li")["queue"][0]["kind"] == "mediation"
    desk.service.execute(
        state.id, "system", decode_command({"type": "connect", "participant": t.lawyer_pid})
    )
    assert desk.store.ticket(t.id).state == "cancelled"
    assert desk.store.log_rows(t.id)[-1][3] == "answered_by_link"
