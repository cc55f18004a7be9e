"""The aiortc stack is loaded when the first peer needs it (docs/media.md "Loading aiortc"):
after a start, the first participants of `server.py serve` still get an answer and media both
ways. Prints how long each offer waited for its answer (the first one after a start pays for
the import unless the plan's prefetch finished first), for docs/benchmarks.md.

The idle server's modules (no aiortc, no PyAV) are checked in test_idle_serve.py.
"""

from __future__ import annotations

import time

import pytest

import media.engine as engine_module
from bench.bot import Bot
from media.engine import MediaConfig, MediaEngine
from signaling.namespace import NAMESPACE
from tests.integration.media.conftest import HOST
from tests.integration.recording.conftest import until
from tests.integration.recording.test_crash import Phone, call
from tests.support.server_proc import ServerProcess


async def test_the_first_participants_after_a_start_get_media_both_ways(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"PARLEY_ICE_HOST_ADDRESSES": HOST}).start()
    token = {role: [u.rsplit("/j/", 1)[1] for u in urls] for role, urls in server.links.items()}
    m = Phone(server.url, token["mediator"][0], "first-M", (200, 30, 30), None)
    a = Phone(server.url, token["party"][0], "first-A", (30, 200, 30), None)
    waited = {}
    try:
        for phone in (m, a):
            await phone.sio.connect(
                phone.url,
                namespaces=[NAMESPACE],
                auth={"token": phone.token},
                transports=["websocket"],
            )
            await until(lambda phone=phone: phone.welcome)
            phone.id = phone.welcome[0]["participant"]
            if phone is a:
                for topic in ("online_mediation", "session_rules"):
                    await a.command(type="record_consent", topic=topic, given=True)
            # named by participant id: the barcode of its pictures names the publisher
            phone.bot = Bot(phone.id, slots=phone.welcome[0]["slots"], color=phone.color)
            offer = await phone.bot.create_offer()
            started = time.perf_counter()
            reply = await call(phone.sio, "offer", {"v": 1, "sdp": offer})
            waited[phone.name] = time.perf_counter() - started
            await phone.bot.accept_answer(reply["sdp"])
            phone.bot.set_slot_map(reply["slots"])
            await phone.bot.wait_connected(20)
        await m.command(type="admit", participant=a.id)
        both = lambda: m.bot.frames_from(a.id) >= 5 and a.bot.frames_from(m.id) >= 5  # noqa: E731
        try:
            await until(both, within=30)
        except AssertionError:
            raise AssertionError(f"M got {m.bot.received()}, A got {a.bot.received()}") from None
    finally:
        for phone in (m, a):
            await phone.close()
        server.stop()
    print(
        "offer -> answer after a start: " + ", ".join(f"{k} {v:.3f} s" for k, v in waited.items())
    )


def test_an_idle_engine_reports_the_same_counters_as_a_loaded_one():
    """/metrics has the same series before and after the stack is loaded."""
    engine = MediaEngine(MediaConfig())
    idle = engine.stats()
    engine._load_stack()  # noqa: SLF001 - what the first offer does
    assert engine.stack_loaded
    assert sorted(engine.stats()) == sorted(idle)


async def test_the_hook_check_of_an_idle_start_runs_in_a_child_and_refuses_a_moved_aiortc(
    monkeypatch,
):
    """A start without aiortc loaded checks aiortc's hook points in a child interpreter
    (media.engine._check_aiortc_in_child): passes on the installed aiortc, and its failure
    (here: aiortc's source unreadable, as in tests/unit/media/test_hook_contract.py) stops the
    start with the child's reason."""
    await engine_module._check_aiortc_in_child()
    broken = (
        "import inspect\n"
        "def no_source(obj): raise OSError('could not get source code')\n"
        "inspect.getsource = no_source\n" + engine_module._CHECK
    )
    monkeypatch.setattr(engine_module, "_CHECK", broken)
    with pytest.raises(engine_module.AiortcCheckFailed, match="cannot read the source"):
        await engine_module._check_aiortc_in_child()
