"""SIGTERM with a participant in the call: the server closes the socket itself and exits 0 in
seconds, as an operator's `systemctl stop` expects (docs/operations.md).

Before the fix the stop waited for the open websocket until its ping timed out (ping interval 5 s
+ timeout 10 s): 14 s with this client, 17 s with a Chromium page. Now the server closes every
socket.io connection when it shuts down and gives open handlers ``SHUTDOWN_GRACE_S`` (2 s):
~4.3 s on an idle machine, most of it closing the media engine. The bound asserted, 12 s, lies
between the two (the old way cannot pass it: it waits 15 s for the ping timeout alone).
"""

from __future__ import annotations

import asyncio
import time

from signaling.namespace import NAMESPACE
from tests.integration.media.conftest import HOST
from tests.integration.recording.conftest import until
from tests.integration.recording.test_crash import Phone
from tests.support.server_proc import ServerProcess

BOUND_S = 12.0


async def test_sigterm_with_a_participant_in_the_call_closes_the_socket_and_exits_0(tmp_path):
    server = ServerProcess(tmp_path / "data", env={"PARLEY_ICE_HOST_ADDRESSES": HOST}).start()
    token = server.links["mediator"][0].rsplit("/j/", 1)[1]
    phone = Phone(server.url, token, "stop-M", (200, 30, 30), None)
    closed: list[float] = []
    phone.sio.on("disconnect", lambda *_: closed.append(time.monotonic()), namespace=NAMESPACE)
    try:
        await phone.join()  # welcomed, media connected
        await until(lambda: any("peer connected" in line for line in server.lines), within=20)
        started = time.monotonic()
        server.proc.terminate()
        code = await asyncio.to_thread(server.proc.wait, 60)
        took = time.monotonic() - started
        await until(lambda: closed, within=10)
        print(f"\nSIGTERM -> exit {took:.2f} s; socket closed after {closed[0] - started:.2f} s")
        assert code == 0, "\n".join(server.lines[-30:])
        assert took < BOUND_S, f"the stop took {took:.1f} s"
        assert any("parley: stopped" in line for line in server.lines)
    finally:
        await phone.close()
        server.stop()
