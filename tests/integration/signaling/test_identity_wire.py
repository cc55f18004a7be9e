"""What a client puts on the wire that no well-behaved client sends: reserved or non-string event
names, JSON constants (NaN, Infinity) and lone UTF-16 surrogates. Each gets a clear error code
in its acknowledgement, nothing is applied, and the connection keeps working.

The frames are written by hand over a real websocket, as a hostile client would."""

from __future__ import annotations

import json

import aiohttp

from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import until


class RawSocket:
    """A socket.io client made of engine.io text frames, to send what python-socketio won't."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list = []
        self._next_id = 0

    @classmethod
    async def connect(cls, http, running, token):
        ws_url = running.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        ws = await http.ws_connect(ws_url)
        assert (await ws.receive_str()).startswith("0")
        raw = cls(ws)
        await ws.send_str("40" + NAMESPACE + "," + json.dumps({"token": token}))
        await raw._read_until(lambda frame: frame.startswith("40" + NAMESPACE + ","))
        return raw

    async def _read_until(self, wanted, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        while True:
            frame = await self.ws.receive_str(timeout=timeout)
            if frame == "2":  # engine.io ping
                await self.ws.send_str("3")
            elif frame.startswith("42" + NAMESPACE + ","):
                self.events.append(json.loads(frame[len(NAMESPACE) + 3 :]))
            if wanted(frame):
                return frame

    async def call(self, body: str) -> list:
        """Send ``body`` (the JSON array text of an EVENT) with an ack id; return the ack."""
        self._next_id += 1
        head = "43" + NAMESPACE + "," + str(self._next_id) + "["
        await self.ws.send_str("42" + NAMESPACE + "," + str(self._next_id) + body)
        frame = await self._read_until(lambda f: f.startswith(head))
        return json.loads(frame[len(head) - 1 :])


def code_of(ack: list) -> str:
    assert len(ack) == 1 and ack[0]["ok"] is False, ack
    return ack[0]["error"]["code"]


async def test_reserved_event_names_are_refused_before_any_handler(running):
    state = running.mediation()
    aid, tok = running.token(state, "party")
    _, tok_m = running.token(state, "mediator")
    _, m_inbox = await running.client(tok_m)
    seq = running.service.state(state.id).seq
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.connect(http, running, tok)
        await until(lambda: running.service.state(state.id).seq == seq)
        # `disconnect` would record participant.disconnected and close the media peer
        assert code_of(await raw.call('["disconnect","client namespace disconnect"]')) == (
            "unknown_event"
        )
        # `connect` would run the connect handler again (and reset the rate bucket)
        assert code_of(await raw.call('["connect",{},{"token":"x"}]')) == "unknown_event"
        assert code_of(await raw.call('["connect"]')) == "unknown_event"
        assert running.service.state(state.id).seq == seq  # nothing written
        assert running.service.state(state.id).participants[aid].space == "waiting"
        # the socket is still the participant's live one and is still served
        ack = await raw.call('["media",{"v":1,"video_paused":false}]')
        assert ack == [{"ok": True}]
        assert not any(e and e.get("code") == "replaced" for e in m_inbox["error"])


async def test_non_string_event_names_get_an_error(running):
    state = running.mediation()
    _, tok = running.token(state, "party")
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.connect(http, running, tok)
        assert code_of(await raw.call('[5,{"v":1}]')) == "invalid_message"
        assert code_of(await raw.call('[null,{"v":1}]')) == "invalid_message"
        assert code_of(await raw.call('[{"a":1},{"v":1}]')) == "invalid_message"
        assert code_of(await raw.call('[["offer"],{"v":1}]')) == "invalid_message"
        assert await raw.call('["media",{"v":1,"video_paused":true}]') == [{"ok": True}]


async def test_json_constants_are_refused_not_read_as_null(running):
    """``participant: NaN`` used to become ``null``, i.e. "myself": the party left."""
    state = running.mediation()
    aid, tok = running.token(state, "party")
    seq = running.service.state(state.id).seq
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.connect(http, running, tok)
        await until(lambda: running.service.state(state.id).seq == seq)
        for constant in ("NaN", "Infinity", "-Infinity"):
            body = '["command",{"v":1,"cmd":{"type":"leave","participant":' + constant + "}}]"
            assert code_of(await raw.call(body)) == "invalid_message", constant
        assert code_of(await raw.call('["media",{"v":NaN,"video_paused":true}]')) == (
            "invalid_message"
        )
        assert running.service.state(state.id).participants[aid].space == "waiting"
        assert running.service.state(state.id).seq == seq
        assert await raw.call('["media",{"v":1,"video_paused":true}]') == [{"ok": True}]


async def test_lone_surrogates_are_refused_with_a_code(running):
    state = running.mediation()
    aid, tok_a = running.token(state, "party")
    _, tok_m = running.token(state, "mediator")
    seq = running.service.state(state.id).seq
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.connect(http, running, tok_m)
        await until(lambda: running.service.state(state.id).seq == seq)
        bodies = [
            '["command",{"v":1,"cmd":{"type":"chat","text":"hi \\ud800 there"}}]',
            '["command",{"v":1,"cmd":{"type":"admit","participant":"\\udfff"},"cid":"c"}]',
            '["command",{"v":1,"cmd":{"type":"chat","text":"ok"},"cid":"\\ud83d"}]',
            '["leave",{"v":1,"reason":"\\ud800"}]',
            '["offer",{"v":1,"sdp":"v=0\\r\\n\\udc00xxxxxxxxxx"}]',
        ]
        for body in bodies:
            assert code_of(await raw.call(body)) == "invalid_message", body
        # a surrogate in the event name is an unknown event, not a crash
        assert code_of(await raw.call('["\\ud800",{"v":1}]')) == "unknown_event"
        assert running.service.state(state.id).seq == seq
        assert running.service.state(state.id).participants[aid].space == "waiting"
        # a proper pair (an emoji) passes the door and reaches rooms (which wants media first)
        ack = await raw.call('["command",{"v":1,"cmd":{"type":"chat","text":"ok \\ud83d\\ude00"}}]')
        assert code_of(ack) == "conflict"
