"""A minimal client of Janus's REST API (HTTP transport) for the VideoRoom plugin.

One `JanusSession` per bot, as a browser would have: `create` a session, `attach` the
VideoRoom plugin, then requests on that handle. Asynchronous plugin events (a publisher's
`joined`, the JSEP answer or offer) arrive on the session's long poll (`GET /janus/<session>`)
and are matched to the request by its transaction. A keepalive is sent every 20 s.

    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, "http://127.0.0.1:8088/janus")
        await janus.create()
        handle = await janus.attach("janus.plugin.videoroom")
        reply = await janus.message(handle, {"request": "join", ...}, jsep=None)
        await janus.destroy()
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import aiohttp

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_S = 20.0


class JanusError(RuntimeError):
    pass


class JanusSession:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.id: int | None = None
        self.events: dict[str, asyncio.Future] = {}  # transaction -> its plugin event
        self.webrtcup: dict[int, asyncio.Event] = {}  # handle -> PeerConnection up
        self._tasks: list[asyncio.Task] = []

    async def _post(self, path: str, body: dict) -> dict:
        async with self.http.post(self.url + path, json=body) as r:
            reply = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply.get('error')}")
        return reply

    async def create(self) -> None:
        reply = await self._post("", {"janus": "create", "transaction": _tx()})
        self.id = reply["data"]["id"]
        self._tasks.append(asyncio.create_task(self._poll()))
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def attach(self, plugin: str = VIDEOROOM) -> int:
        body = {"janus": "attach", "plugin": plugin, "transaction": _tx()}
        handle = (await self._post(f"/{self.id}", body))["data"]["id"]
        self.webrtcup[handle] = asyncio.Event()
        return handle

    async def message(
        self, handle: int, body: dict, jsep: dict | None = None, within: float = 30.0
    ) -> tuple[dict, dict | None]:
        """A plugin request; returns (plugin data, jsep) of its synchronous answer or its event."""
        tx = _tx()
        waiter = asyncio.get_running_loop().create_future()
        self.events[tx] = waiter  # before the POST: the event may beat the POST's answer
        request = {"janus": "message", "transaction": tx, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.id}/{handle}", request)
            if reply.get("janus") == "success":  # synchronous request (e.g. create)
                return _plugin_data(reply), reply.get("jsep")
            event = await asyncio.wait_for(waiter, within)
            return _plugin_data(event), event.get("jsep")
        finally:
            self.events.pop(tx, None)

    async def wait_webrtcup(self, handle: int, within: float) -> None:
        await asyncio.wait_for(self.webrtcup[handle].wait(), within)

    async def _poll(self) -> None:
        """The session's long poll: dispatches events until the session is destroyed."""
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.id}?maxev=10") as r:
                    reply = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)
                continue
            for event in reply if isinstance(reply, list) else [reply]:
                self._dispatch(event)

    def _dispatch(self, event: dict) -> None:
        kind = event.get("janus")
        if kind == "event":
            waiter = self.events.get(event.get("transaction", ""))
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        elif kind == "webrtcup":
            up = self.webrtcup.get(event.get("sender"))
            if up is not None:
                up.set()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            with contextlib.suppress(aiohttp.ClientError, JanusError):
                await self._post(f"/{self.id}", {"janus": "keepalive", "transaction": _tx()})

    async def destroy(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.id is not None:
            with contextlib.suppress(aiohttp.ClientError, JanusError, asyncio.TimeoutError):
                await self._post(f"/{self.id}", {"janus": "destroy", "transaction": _tx()})


def _tx() -> str:
    return secrets.token_hex(6)


def _plugin_data(reply: dict) -> dict:
    data = reply.get("plugindata", {}).get("data", {})
    if "error" in data:
        raise JanusError(f"videoroom: {data.get('error')} ({data.get('error_code')})")
    return data
