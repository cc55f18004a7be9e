"""The pages' Content-Security-Policy names the other workers a page may open its socket on
(``connect_origins``: the supervisor gives each worker the others), as http(s) and ws(s); a
value that is not an origin is refused at start as bad configuration."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import server
from signaling.headers import CSP, connect_sources, security_headers


@pytest.mark.parametrize(
    "origins,sources",
    [
        ([], []),
        (["http://127.0.0.1:8081"], ["http://127.0.0.1:8081", "ws://127.0.0.1:8081"]),
        (
            ["https://parley.example:8444/"],
            ["https://parley.example:8444", "wss://parley.example:8444"],
        ),
    ],
)
def test_an_origin_and_its_websocket_twin(origins, sources):
    assert connect_sources(origins) == sources


@pytest.mark.parametrize(
    "bad",
    ["127.0.0.1:8081", "ftp://h", "http://", "http://h/path", "http://h x", "javascript:alert(1)"],
)
def test_what_is_not_an_http_origin_is_refused(bad):
    with pytest.raises(ValueError, match="bad_config: connect_origins"):
        connect_sources([bad])


async def test_every_response_carries_the_policy_with_the_other_workers():
    on_prepare = security_headers(hsts=False, connect=["http://127.0.0.1:8082"])
    response = web.Response()
    await on_prepare(make_mocked_request("GET", "/kiosk"), response)
    policy = response.headers["Content-Security-Policy"]
    assert "connect-src 'self' http://127.0.0.1:8082 ws://127.0.0.1:8082;" in policy
    assert policy.replace(" http://127.0.0.1:8082 ws://127.0.0.1:8082", "") == CSP
    plain = web.Response()
    await security_headers(hsts=False)(make_mocked_request("GET", "/"), plain)
    assert plain.headers["Content-Security-Policy"] == CSP


def test_serve_refuses_a_bad_origin_before_it_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARLEY_CONNECT_ORIGINS", "http://127.0.0.1:8081,not-an-origin")
    assert server.main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 2
    assert "bad_config: connect_origins: 'not-an-origin'" in capsys.readouterr().err
