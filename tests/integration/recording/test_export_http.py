"""The export through the review page of a real server: start (reason), progress as JSON, the
export in the ledger, the download after a stated reason (``recording.accessed`` action
``export``), and every refusal — no login or a party's token, another mediator, a reviewer of
another site, bad ids, foreign tickets, bad input — each changing nothing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re

import av

from recording.export import TILE_H, TILE_W
from rooms.ledger import verify_chain
from tests.integration.recording.test_review import (  # noqa: F401 - fixtures
    World,
    csrf_of,
    jar,
    logged_in,
    running,
    world,
)


async def _page(http, url, sid):
    async with http.get(f"{url}/review/{sid}") as r:
        assert r.status == 200
        return await r.text()


async def _start(http, url, sid, reason="copy for the court"):
    csrf = csrf_of(await _page(http, url, sid))
    async with http.post(
        f"{url}/review/{sid}/export", data={"csrf": csrf, "reason": reason}, allow_redirects=False
    ) as r:
        return r.status, await r.text()


async def _finished(http, url, sid, within=90.0):
    loop = asyncio.get_running_loop()
    end, seen = loop.time() + within, []
    while loop.time() < end:
        async with http.get(f"{url}/review/{sid}/export/status") as r:
            assert r.status == 200
            body = await r.json()
        seen.append(body["progress"])
        if body["state"] in ("done", "failed"):
            return body, seen
        await asyncio.sleep(0.2)
    raise AssertionError("the export did not finish")


async def test_export_progress_ledger_and_logged_download(world: World):  # noqa: F811
    url = world.run.url
    state, segs = world.mediation()
    sid = state.id
    async with logged_in(url, "wang") as http:
        html = await _page(http, url, sid)
        assert "开始导出 Start the export" in html and "id='export'" not in html
        async with http.get(f"{url}/review/{sid}/export/status") as r:
            assert (await r.json())["state"] == "none"

        before = world.seq(sid)
        for reason in ("", "  ", "x" * 201):  # a reason is required
            assert (await _start(http, url, sid, reason))[0] == 400
        async with http.post(f"{url}/review/{sid}/export", data={"reason": "no csrf"}) as r:
            assert r.status == 403
        assert world.seq(sid) == before

        status, _ = await _start(http, url, sid)
        assert status == 303
        html = await _page(http, url, sid)  # the progress bar, fed by review.js
        assert "id='export-progress'" in html and "/static/review.js" in html
        assert "正在导出 Exporting" in html or "排队中 Queued" in html or "导出完成" in html
        body, _ = await _finished(http, url, sid)
        assert body["state"] == "done", body
        assert body["progress"] == 1.0

        [made] = [e for e in world.service.events(sid) if e.type == "recording.exported"]
        assert made.actor == "staff:wang" and made.data["grant"] == "mediator"
        assert sorted(made.data["sources"]) == sorted(s["file"] for s in segs)
        html = await _page(http, url, sid)
        assert made.data["sha256"][:16] in html and "id='exports'" in html

        # the download is logged before a byte leaves
        csrf = csrf_of(html)
        name = made.data["file"]
        seq = world.seq(sid)
        for bad in (
            {"file": "export-999999.exp"},  # no such export
            {"file": "../datakey.json"},  # not a file name
            {"file": segs[0]["file"]},  # a segment is not an export
        ):
            async with http.post(
                f"{url}/review/{sid}/access",
                data={"csrf": csrf, "action": "export", "reason": "appeal", **bad},
                allow_redirects=False,
            ) as r:
                assert r.status == 404, bad
        async with http.post(
            f"{url}/review/{sid}/access",
            data={"csrf": csrf, "action": "export", "reason": "", "file": name},
            allow_redirects=False,
        ) as r:
            assert r.status == 400
        assert world.seq(sid) == seq
        async with http.post(
            f"{url}/review/{sid}/access",
            data={"csrf": csrf, "action": "export", "reason": "appeal hearing", "file": name},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
            where = r.headers["Location"]
        assert where.startswith(f"/review/{sid}/exported/") and where.endswith("/" + name)
        access = [e for e in world.service.events(sid) if e.type == "recording.accessed"][-1]
        assert access.actor == "staff:wang"
        assert access.data["action"] == "export" and access.data["files"] == [name]
        assert access.data["reason"] == "appeal hearing"
        async with http.get(url + where) as r:
            assert r.status == 200
            assert r.headers["Content-Disposition"].startswith("attachment;")
            data = await r.read()
        assert hashlib.sha256(data).hexdigest() == made.data["plain_sha256"]
        with av.open(io.BytesIO(data)) as c:
            v = c.streams.video[0].codec_context
            assert (v.width, v.height) == (2 * TILE_W, TILE_H)  # two parties side by side
        # an export ticket opens no player and no segment; a play ticket opens no export
        ticket = where.split("/")[-2]
        async with http.get(f"{url}/review/{sid}/play/{ticket}") as r:
            assert r.status == 403
        async with http.get(f"{url}/review/{sid}/segment/{ticket}/{segs[0]['file']}") as r:
            assert r.status == 403
        assert verify_chain(world.service.events(sid)) == []

        # not logged in / a party's token: to the login page, nothing happens
        _, token = world.run.token(state, "party")
        async with jar() as party:
            for path in (
                where,
                f"{where}?token={token}",
                f"/review/{sid}/export/status",
                f"/review/{sid}/export/status?token={token}",
                "/review",
            ):
                async with party.get(url + path, allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/login", path
            async with party.post(
                f"{url}/review/{sid}/export", data={"reason": "mine"}, allow_redirects=False
            ) as r:
                assert r.status == 303 and r.headers["Location"] == "/login"

        # another mediator, a reviewer, a supervisor who may only hold: forbidden, even with
        # wang's ticket
        seq = world.seq(sid)
        for who in ("li", "rev-a", "boss"):
            async with logged_in(url, who) as other:
                async with other.get(url + where) as r:
                    assert r.status == 403, who
                async with other.get(f"{url}/review/{sid}/export/status") as r:
                    assert r.status == 403, who
                async with other.get(f"{url}/login") as r:
                    csrf = csrf_of(await r.text())
                async with other.post(
                    f"{url}/review/{sid}/export", data={"csrf": csrf, "reason": "let me see"}
                ) as r:
                    assert r.status == 403, who
        assert world.seq(sid) == seq
        # bad ids
        for path in (
            "/review/nope/export/status",
            f"/review/nope/exported/{ticket}/{name}",
        ):
            async with http.get(url + path) as r:
                assert r.status == 404, path
        for path in (
            f"/review/{sid}/exported/{'x' * 32}/{name}",
            f"/review/{sid}/exported/{ticket}/export-000009.exp",
            f"/review/{sid}/exported/{ticket}/..%2Fdatakey.json",
        ):
            async with http.get(url + path) as r:
                assert r.status == 403, path
        async with http.post(
            f"{url}/review/nope/export", data={"csrf": csrf_of(html), "reason": "copy"}
        ) as r:
            assert r.status == 404
        assert world.seq(sid) == seq


async def test_export_by_site_for_visits_and_a_changed_export(world: World):  # noqa: F811
    url = world.run.url
    state, _ = world.visitation("prison-a")
    sid = state.id
    async with logged_in(url, "rev-b") as rev_b:  # a reviewer of another prison
        async with rev_b.get(f"{url}/review/{sid}/export/status") as r:
            assert r.status == 403
    async with logged_in(url, "rev-a") as http:
        assert (await _start(http, url, sid, "complaint 17"))[0] == 303
        status, text = await _start(http, url, sid, "again")  # one at a time per session
        assert status in (303, 409), text
        body, _ = await _finished(http, url, sid)
        assert body["state"] == "done", body
        [made, *more] = [e for e in world.service.events(sid) if e.type == "recording.exported"]
        assert made.actor == "staff:rev-a" and made.data["grant"] == "reviewer"
        # a changed export answers 410, never its bytes
        path = world.root / sid / made.data["file"]
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        csrf = csrf_of(await _page(http, url, sid))
        async with http.post(
            f"{url}/review/{sid}/access",
            data={"csrf": csrf, "action": "export", "reason": "check", "file": made.data["file"]},
            allow_redirects=False,
        ) as r:
            where = r.headers["Location"]
        async with http.get(url + where) as r:
            assert r.status == 410
            assert not re.search(rb"webm", await r.read())
