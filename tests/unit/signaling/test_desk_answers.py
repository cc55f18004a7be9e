"""The desk's JSON answers (signaling/desk_http.py, ``answers``): a desk refusal and a refusal of
the consultation's session (rooms', or the cluster relay's when the session's node is changing
or silent) reach the lawyer's page as a code and an HTTP status, never as a 500."""

from __future__ import annotations

import asyncio
import json

import pytest

from cluster.relay import MOVING, UNAVAILABLE, RelayError
from desk.errors import DeskError
from rooms.errors import CommandError
from signaling.desk_http import answers


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (DeskError("busy", "finish the current consultation first"), 409, "busy"),
        (CommandError("forbidden", "a citizen may not end session here"), 403, "forbidden"),
        (CommandError("ended", "this session has ended"), 409, "ended"),
        (RelayError(MOVING, "the session is moving to another node; try again"), 503, MOVING),
        (RelayError(UNAVAILABLE, "its node did not answer"), 503, UNAVAILABLE),
    ],
)
def test_a_refusal_is_an_answer(error, status, code):
    @answers
    async def handler():
        raise error

    response = asyncio.run(handler())
    body = json.loads(response.body)
    assert response.status == status and body["error"]["code"] == code, body
    assert body["error"]["message"] == error.message


def test_anything_else_is_not_swallowed():
    @answers
    async def handler():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        asyncio.run(handler())
