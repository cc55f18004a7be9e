"""coturn (a real ``turnserver`` with ``static-auth-secret``) accepts the credentials Parley
issues and refuses expired and forged ones: a TURN Allocate over UDP and over TCP with aioice's
TURN client (the one aiortc uses)."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling.turn import TurnCredentials, credential_for
from tests.support.procs import Coturn

SECRET = "coturn-shared-secret-for-tests"

pytestmark = pytest.mark.skipif(
    not shutil.which("turnserver"),
    reason="turnserver missing: scripts/setup.sh --test installs coturn",
)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory):
    server = Coturn(tmp_path_factory.mktemp("coturn"), SECRET).start()
    yield server
    server.stop()


async def allocate(coturn, username, password, transport):
    """Allocate a relayed address; returns it (or raises the TURN error)."""
    turn, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", coturn.port),
            username=username,
            password=password,
            transport=transport,
        ),
        15,
    )
    try:
        return turn.get_extra_info("sockname")
    finally:
        turn.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_issued_credentials_allocate_a_relay(coturn, transport):
    turn = TurnCredentials(SECRET, [coturn.url(transport)], max_ttl=600)
    [server] = turn.ice_servers("p-alice", not_after=time.time() + 3600)
    relayed = await allocate(coturn, server["username"], server["credential"], transport)
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_expired_credentials_are_refused(coturn, transport):
    # correctly signed, but the expiry has passed: coturn answers 401
    turn = TurnCredentials(SECRET, [coturn.url(transport)], clock=lambda: time.time() - 7200)
    cred = turn.issue("p-alice", not_after=time.time() - 60)
    with pytest.raises(stun.TransactionFailed) as err:
        await allocate(coturn, cred.username, cred.credential, transport)
    assert err.value.response.attributes["ERROR-CODE"][0] == 401


@pytest.mark.parametrize(
    "forge",
    [
        "wrong secret",
        "extended expiry",
    ],
)
async def test_forged_credentials_are_refused(coturn, forge):
    good = TurnCredentials(SECRET, [coturn.url()]).issue("p-alice", not_after=time.time() + 60)
    if forge == "wrong secret":
        username, password = good.username, credential_for(b"guessed", good.username)
    else:  # the holder pushes its own expiry forward and keeps the old credential
        username = f"{good.expires + 86400}:p-alice"
        password = good.credential
    with pytest.raises(stun.TransactionFailed) as err:
        await allocate(coturn, username, password, "udp")
    assert err.value.response.attributes["ERROR-CODE"][0] == 401
    assert SECRET not in coturn.output()  # the shared secret is never logged


async def test_rotation_window_accepts_the_old_and_the_new_secret(tmp_path):
    """coturn takes several ``static-auth-secret`` lines: during a rotation (docs/operations.md)
    it accepts credentials issued with either, and nothing else."""
    base = tmp_path / "rotation.conf"
    base.write_text("static-auth-secret=the-new-secret\n")
    server = Coturn(tmp_path / "coturn", "the-old-secret", base=base).start()
    try:
        for secret, accepted in (("the-old-secret", True), ("the-new-secret", True), ("x", False)):
            cred = TurnCredentials(secret, [server.url()]).issue("p-a", time.time() + 60)
            if accepted:
                await allocate(server, cred.username, cred.credential, "udp")
            else:
                with pytest.raises(stun.TransactionFailed):
                    await allocate(server, cred.username, cred.credential, "udp")
    finally:
        server.stop()


async def test_a_live_allocation_outlives_its_credential(coturn):
    """coturn checks the expiry when an allocation is made; once made, it keeps being refreshed
    after the credential expired, so a relayed call does not drop at the expiry (a reconnection
    gets new credentials with its new welcome). docs/operations.md relies on this."""
    # long enough for the allocation to be made in time on a loaded machine
    cred = TurnCredentials(SECRET, [coturn.url()]).issue("p-long", not_after=time.time() + 5)
    turn, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", coturn.port), cred.username, cred.credential
    )
    try:
        # a new allocation is refused once coturn's clock (a cached second, late on a loaded
        # machine) has passed the expiry: wait for that state, not for a number of seconds
        deadline = time.monotonic() + 60
        while True:
            try:
                await allocate(coturn, cred.username, cred.credential, "udp")
            except stun.TransactionFailed:
                break
            assert time.time() < cred.expires + 1 or time.monotonic() < deadline, (
                "coturn still accepts an expired credential"
            )
            await asyncio.sleep(0.2)
        assert time.time() >= cred.expires  # ...refused because it expired, not before
        refresh = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 600
        inner = turn._TurnTransport__inner_protocol  # aioice's client protocol
        response, _ = await inner.request_with_retry(refresh)  # ...the live one is refreshed
        assert response.attributes["LIFETIME"] == 600
    finally:
        turn.close()
