"""Files fetched from another node (cluster/peer_files.py): a request's signature is good for
one path, under one key, until it expires and no longer than 30 s ahead; a fetch keeps only
bytes whose SHA-256 is the record's and asks the next node when one answers wrong, none, or
too much; a node never asks itself. Real HTTP servers on loopback."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from aiohttp import web

from cluster.peer_files import HEADER, VALID_S, PeerFiles, allowed, signature

KEY = b"k" * 32
PATH = "/cluster/desk-documents/7/cd-0123456789abcdef"
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"{int(NOW + 10)}.{signature(KEY, PATH, int(NOW + 10))}", True),
        (f"{int(NOW + 10)}.{signature(b'x' * 32, PATH, int(NOW + 10))}", False),  # another key
        (f"{int(NOW + 10)}.{signature(KEY, PATH + 'x', int(NOW + 10))}", False),  # another file
        (f"{int(NOW - 1)}.{signature(KEY, PATH, int(NOW - 1))}", False),  # expired
        (f"{int(NOW + VALID_S + 5)}.{signature(KEY, PATH, int(NOW + VALID_S + 5))}", False),
        (f"{int(NOW + 10)}.{signature(KEY, PATH, int(NOW + 11))}", False),  # expiry changed
        ("soon.abc", False),
        ("", False),
        (None, False),
        ("1" * 200, False),
    ],
)
def test_a_signature_is_good_for_one_path_one_key_and_thirty_seconds(header, ok):
    assert allowed(KEY, PATH, header, now=NOW) is ok


async def _node(answers: dict[str, bytes | None]) -> tuple[web.AppRunner, str, list]:
    seen = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(allowed(KEY, request.path, request.headers.get(HEADER)))
        body = answers.get(request.path)
        return web.Response(body=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", seen


async def test_only_the_records_bytes_are_kept_and_the_next_node_is_asked(tmp_path):
    good = b"%PDF-1.4 the contract"
    wrong, none, big, right = (
        await _node({PATH: b"%PDF-1.4 something else"}),
        await _node({}),
        await _node({PATH: good + b"x" * 100}),
        await _node({PATH: good}),
    )
    nodes = [
        SimpleNamespace(id="me", url=right[1]),  # itself: never asked
        *(SimpleNamespace(id=f"n{i}", url=n[1]) for i, n in enumerate((wrong, none, big, right))),
    ]
    registry = SimpleNamespace(node_id="me", nodes=_async((nodes, [])))
    peers = PeerFiles(registry, KEY)
    into = tmp_path / "7" / "cd-0123456789abcdef.bin"
    try:
        got = await peers.fetch(PATH, hashlib.sha256(good).hexdigest(), len(good) + 50, into)
        assert got and into.read_bytes() == good
        assert [len(n[2]) for n in (wrong, none, big, right)] == [1, 1, 1, 1]  # each asked once
        assert all(n[2] == [True] for n in (wrong, none, big, right))  # signed requests
        into.unlink()
        missing = hashlib.sha256(b"nobody has this").hexdigest()
        assert not await peers.fetch(PATH, missing, 1000, into) and not into.exists()
        assert not list(tmp_path.rglob(".*"))  # no partial file left
    finally:
        await peers.close()
        for n in (wrong, none, big, right):
            await n[0].cleanup()


def _async(value):
    async def call():
        return value

    return call
