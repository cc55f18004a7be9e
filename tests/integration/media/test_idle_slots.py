"""Idle slots cost nothing on a real aiortc connection: no task, no RTCP report, no SRTP stream.

Two bots offer 7 slot pairs each (the phone page's default); the plan uses one pair of each.
"""

from __future__ import annotations

import asyncio

from tests.integration.media.conftest import mesh

NAMES = ["p-a", "p-b"]


class SsrcSpy:
    """Stands in for a transport's outbound SRTP session and records the SSRC of everything it
    protects: libsrtp keeps one stream of state per SSRC it has protected."""

    def __init__(self, real) -> None:
        self.real = real
        self.rtp: set[int] = set()
        self.rtcp: set[int] = set()

    def protect(self, data: bytes) -> bytes:
        self.rtp.add(int.from_bytes(data[8:12], "big"))
        return self.real.protect(data)

    def protect_rtcp(self, data: bytes) -> bytes:
        self.rtcp.add(int.from_bytes(data[4:8], "big"))
        return self.real.protect_rtcp(data)


def server_sender_tasks(engine) -> list[asyncio.Task]:
    """Running tasks of aiortc's RTCRtpSender bound to one of the server's slot senders."""
    senders = {
        id(s) for p in engine.peers.values() for slot in p.slots for s in slot.senders.values()
    }
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if id(owner) in senders:
            found.append(task)
    return found


def slot_ssrcs(engine, pid) -> set[int]:
    return {
        ssrc
        for slot in engine.peers[pid].slots
        for s in slot.senders.values()
        for ssrc in (s._ssrc, s._rtx_ssrc)
    }


def slots_by_use(engine, pid):
    peer = engine.peers[pid]
    used = {e["slot"] for e in engine.slot_map(pid) if e["participant"] is not None}
    return (
        [s for s in peer.slots if s.index in used],
        [s for s in peer.slots if s.index not in used],
    )


async def test_idle_slots_run_no_task_send_no_report_and_hold_no_srtp_stream(room):
    for i, name in enumerate(NAMES):
        await room.join(name, slots=7, color=(200, 40 * i, 0), tone_hz=440 + 110 * i)
    engine = room.engine
    await room.wait_for(
        lambda: (
            len(engine.peers) == 2 and all(p.state == "connected" for p in engine.peers.values())
        ),
        within=10,
    )
    spies = {}
    for pid, peer in engine.peers.items():
        dtls = peer.pc.getTransceivers()[0].receiver.transport
        spies[pid] = dtls._tx_srtp = SsrcSpy(dtls._tx_srtp)
    await asyncio.sleep(2.0)  # longer than aiortc's longest RTCP interval (1.5 s)
    # nothing attached yet: 14 idle senders per peer, all silent (the two uplink receivers'
    # receiver reports and REMB are the only RTCP the server sends)
    assert server_sender_tasks(engine) == []
    for pid, spy in spies.items():
        assert spy.rtp == set() and not spy.rtcp & slot_ssrcs(engine, pid)

    engine.apply_plan(mesh(NAMES))
    await room.wait_for(
        lambda: all(
            r.reports > 0
            for pid in NAMES
            for s in slots_by_use(engine, pid)[0]
            for r in s.relays.values()
        ),
        within=5,
    )
    await asyncio.sleep(1.0)
    assert server_sender_tasks(engine) == []  # the relay's timer sends the reports, not a task
    for pid in NAMES:
        used, idle = slots_by_use(engine, pid)
        assert len(used) == 1 and len(idle) == 6
        for slot in used:
            for relay in slot.relays.values():
                assert relay.packets > 0 and relay.reports > 0
                assert relay.sender._ssrc in spies[pid].rtp & spies[pid].rtcp
        for slot in idle:
            for relay in slot.relays.values():
                assert relay.reports == 0 and relay.packets == 0
                assert relay._report_timer is None
                assert relay.sender._ssrc not in spies[pid].rtp | spies[pid].rtcp
        # SRTP streams of slot senders on this connection: the active pair's two SSRCs
        assert len((spies[pid].rtp | spies[pid].rtcp) & slot_ssrcs(engine, pid)) == 2

    # detached: the slot's reports stop
    engine.apply_plan([])
    reports = {
        id(r): r.reports for p in engine.peers.values() for s in p.slots for r in s.relays.values()
    }
    for peer in engine.peers.values():
        for slot in peer.slots:
            assert all(r._report_timer is None and not r.active for r in slot.relays.values())
    await asyncio.sleep(2.0)
    after = {
        id(r): r.reports for p in engine.peers.values() for s in p.slots for r in s.relays.values()
    }
    assert after == reports

    # attached again: reports resume
    engine.apply_plan(mesh(NAMES))
    await asyncio.sleep(2.0)
    used, _ = slots_by_use(engine, "p-a")
    assert all(r.reports > reports[id(r)] for s in used for r in s.relays.values())
