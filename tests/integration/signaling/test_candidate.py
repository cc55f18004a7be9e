"""Trickle ICE at the socket door: the ``candidate`` event (web/static/call.js sends its offer at
once and its candidates after it). A real aiortc bot against the real server: an offer without
any candidate still connects, its trickled candidates are taken, and every bad candidate gets a
clear code while the connection goes on."""

from __future__ import annotations

import re

from bench.bot import Bot
from media.peer import MAX_TRICKLED
from signaling.namespace import NAMESPACE


async def call(sio, event, payload):
    return await sio.call(event, payload, namespace=NAMESPACE, timeout=10)


def code(reply) -> str | None:
    return None if reply.get("ok") else reply["error"]["code"]


def split_candidates(sdp: str) -> tuple[str, list[str], str, str]:
    """(the offer without its candidates and end-of-candidates, the candidate lines of the first
    m-line, its mid, its ufrag)."""
    lines = sdp.split("\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("m="))
    second = next(i for i, line in enumerate(lines) if line.startswith("m=") and i > first)
    cands = [line[2:] for line in lines[first:second] if line.startswith("a=candidate:")]
    mid = next(line[6:] for line in lines[first:second] if line.startswith("a=mid:"))
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") and line != "a=end-of-candidates"
    ]
    return "\r\n".join(kept), cands, mid, ufrag


async def test_offer_without_candidates_connects_and_trickled_ones_are_taken(running):
    state = running.mediation()
    _, tok = running.token(state, "mediator")
    sio, inbox = await running.client(tok)
    bot = Bot("trickle", slots=inbox["welcome"][0]["slots"], color=None, size=(160, 120))
    try:
        sdp, cands, mid, ufrag = split_candidates(await bot.create_offer())
        assert cands and "a=candidate" not in sdp
        # no connection yet: nothing to add a candidate to
        first = {"v": 1, "candidate": cands[0], "mid": mid, "ufrag": ufrag}
        assert code(await call(sio, "candidate", first)) == "no_connection"
        reply = await call(sio, "offer", {"v": 1, "sdp": sdp})
        assert reply["ok"], reply
        for line in cands:
            r = await call(
                sio, "candidate", {"v": 1, "candidate": line, "mid": mid, "ufrag": ufrag}
            )
            assert r == {"ok": True}, r
        await bot.accept_answer(reply["sdp"])
        await bot.wait_connected(20)
    finally:
        await bot.close()


async def test_bad_candidates_get_codes_and_the_connection_goes_on(running):
    state = running.mediation()
    _, tok = running.token(state, "mediator")
    sio, inbox = await running.client(tok)
    bot = Bot("bad-trickle", slots=inbox["welcome"][0]["slots"], color=None, size=(160, 120))
    try:
        sdp, cands, mid, ufrag = split_candidates(await bot.create_offer())
        reply = await call(sio, "offer", {"v": 1, "sdp": sdp})
        assert reply["ok"], reply
        await bot.accept_answer(reply["sdp"])
        good = {"v": 1, "candidate": cands[0], "mid": mid, "ufrag": ufrag}

        async def ask(**change):
            return code(await call(sio, "candidate", {**good, **change}))

        # the message itself
        assert code(await call(sio, "candidate", "a string")) == "invalid_message"
        assert code(await call(sio, "candidate", {"v": 1, "mid": mid})) == "invalid_message"
        assert await ask(v=2) == "invalid_message"
        assert await ask(candidate=12) == "invalid_message"
        assert await ask(candidate="short") == "invalid_message"
        assert await ask(candidate="candidate:" + "1" * 600) == "invalid_message"
        assert await ask(mid="") == "invalid_message"
        assert await ask(mid="0 OR 1") == "invalid_message"
        assert await ask(ufrag="a;b=c") == "invalid_message"
        assert code(await call(sio, "candidate", {**good, "extra": 1})) == "invalid_message"
        assert await ask(ufrag="A" * 2000) == "too_large"
        # the candidate against this connection
        assert await ask(ufrag="otherUfrag1") == "stale_candidate"
        assert await ask(mid="99") == "bad_candidate"
        assert await ask(candidate="candidate:this is not a candidate line") == "bad_candidate"
        assert await ask(candidate="candidate:1 2 udp 2122260223 10.0.0.1 5000 typ host") == (
            "bad_candidate"  # component 2: RTCP is muxed
        )
        assert await ask(candidate="candidate:1 1 sctp 2122260223 10.0.0.1 5000 typ host") == (
            "bad_candidate"
        )
        assert await ask(candidate="candidate:1 1 udp 2122260223 10.0.0.1 70000 typ host") == (
            "bad_candidate"
        )
        assert await ask(candidate="candidate:1 1 udp 2122260223 evil.example 5000 typ host") == (
            "bad_candidate"
        )
        assert await ask(candidate="candidate:1 1 udp 2122260223 10.0.0.1 5000 typ magic") == (
            "bad_candidate"
        )
        # none of it hurt the connection
        await bot.wait_connected(20)
    finally:
        await bot.close()


async def test_trickled_candidates_are_bounded_per_connection(running):
    state = running.mediation()
    _, tok = running.token(state, "mediator")
    sio, inbox = await running.client(tok)
    bot = Bot("many-trickle", slots=inbox["welcome"][0]["slots"], color=None, size=(160, 120))
    try:
        sdp, cands, mid, ufrag = split_candidates(await bot.create_offer())
        reply = await call(sio, "offer", {"v": 1, "sdp": sdp})
        assert reply["ok"], reply
        await bot.accept_answer(reply["sdp"])
        good = {"v": 1, "candidate": cands[0], "mid": mid, "ufrag": ufrag}

        async def ask(**change):
            return code(await call(sio, "candidate", {**good, **change}))

        # bounded: at most MAX_TRICKLED per connection
        results = []
        for i in range(MAX_TRICKLED + 1):
            line = f"candidate:{i} 1 udp 2122260223 192.0.2.{i + 1} {5000 + i} typ host"
            results.append(await ask(candidate=line))
        assert results[:MAX_TRICKLED] == [None] * MAX_TRICKLED and results[-1] == (
            "too_many_candidates"
        ), results
        await bot.wait_connected(20)
    finally:
        await bot.close()
