"""After the answer, a connection's descriptions keep only the codecs it uses (media/passthrough.py
`keep_negotiated_codecs`): every section of the offer and of the answer holds its transceiver's
own list, the call still flows both ways, a trickled candidate is still taken, and the Python
heap a participant's connection keeps falls by the parsed codecs it no longer holds."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from media import passthrough
from tests.integration.media.conftest import mesh

pytestmark = pytest.mark.slow


def descriptions(pc):
    return [
        d
        for name in ("pendingRemote", "currentRemote", "pendingLocal", "currentLocal")
        if (d := getattr(pc, f"_RTCPeerConnection__{name}Description")) is not None
    ]


async def test_the_descriptions_keep_the_negotiated_codecs_and_the_call_flows(room, monkeypatch):
    offered = {}
    original = passthrough.keep_negotiated_codecs

    def counting(pc):  # what the offer carried, before it is trimmed
        offered["codecs"] = sum(len(s.rtp.codecs) for d in descriptions(pc) for s in d.media)
        original(pc)

    monkeypatch.setattr(passthrough, "keep_negotiated_codecs", counting)
    alice = await room.join("a", slots=1, color=(220, 40, 40), tone_hz=440)
    monkeypatch.setattr(passthrough, "keep_negotiated_codecs", original)
    bob = await room.join("b", slots=1, color=(40, 60, 220), tone_hz=880)
    room.engine.apply_plan(mesh(["a", "b"]))
    await room.wait_for(lambda: bob.frames_from("a") >= 10 and alice.frames_from("b") >= 10, 15)

    pc = room.engine.peers["a"].pc
    by_mid = {t.mid: t for t in pc.getTransceivers()}
    kept = 0
    assert len(descriptions(pc)) == 2  # the offer (remote) and the answer (local)
    for description in descriptions(pc):
        for section in description.media:
            assert section.rtp.codecs is by_mid[section.rtp.muxId]._codecs
            kept += len(section.rtp.codecs)
    assert offered["codecs"] > kept  # the offer's other codecs are gone
    # a candidate trickled after the answer is still added to its section
    before = len(descriptions(pc)[0].media[0].ice_candidates)
    await room.engine.peers["a"].add_candidate(
        "candidate:1 1 udp 2122260223 192.0.2.77 40000 typ host",
        descriptions(pc)[0].media[0].rtp.muxId,
        room.engine.peers["a"].remote_ufrag,
    )
    assert len(descriptions(pc)[0].media[0].ice_candidates) == before + 1


async def test_a_connection_keeps_less_of_the_offer_on_the_heap(room, monkeypatch):
    """The same offer answered twice, with and without the trim: the heap each keeps."""

    async def heap_of_a_join(name: str) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await room.join(name, slots=7)
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    trimmed = await heap_of_a_join("t")
    monkeypatch.setattr(passthrough, "keep_negotiated_codecs", lambda pc: None)
    untrimmed = await heap_of_a_join("u")
    print(
        f"\nheap of a 7-slot join: {trimmed / 1024:.0f} KiB trimmed, {untrimmed / 1024:.0f} KiB not"
    )
    assert untrimmed - trimmed > 30 * 1024
