"""The review page on a real server: real staff logins, real sealed segments decrypted on the
server, the access log in the ledger, and every refusal (nothing changes on a refusal)."""

from __future__ import annotations

import contextlib
import io
import re

import aiohttp
import av
import pytest

from recording.keys import MasterKey
from rooms.ledger import verify_chain
from rooms.service import ParticipantSpec
from server import CONFIG
from signaling.staff import ACCOUNTS
from tests.integration.recording.segments import record
from tests.integration.signaling.conftest import Running, running  # noqa: F401
from visits.directory import Directory
from visits.store import VisitStore

PASSWORD = "correct horse battery"


def jar():
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http, url, username):
    async with http.get(url + "/login") as r:
        csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
    async with http.post(
        url + "/login",
        data={"csrf": csrf, "username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()


@contextlib.asynccontextmanager
async def logged_in(url, username):
    """A fresh client session signed in as ``username``."""
    async with jar() as http:
        await login(http, url, username)
        yield http


def csrf_of(html: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", html).group(1)


class World:
    def __init__(self, run: Running) -> None:
        self.run = run
        self.service = run.service
        self.data_dir = run.app[CONFIG].data_dir
        self.root = self.data_dir / "recordings"
        self.master = MasterKey.load(self.data_dir)
        for name, roles in {
            "wang": ["mediator"],
            "li": ["mediator"],
            "boss": ["supervisor"],
            "root": ["admin"],
            "rev-a": ["reviewer"],
            "rev-b": ["reviewer"],
            "sup-a": ["supervisor"],
        }.items():
            run.app[ACCOUNTS].add(name, f"User {name}", roles, PASSWORD)
        self.visits = VisitStore(self.data_dir)
        with self.visits.tx() as db:
            db.execute("INSERT INTO sites VALUES ('prison-a', 'prison', 'Prison A')")
            db.execute("INSERT INTO sites VALUES ('prison-b', 'prison', 'Prison B')")
        directory = Directory(self.visits)
        directory.grant("rev-a", "reviewer", "prison-a")
        directory.grant("rev-b", "reviewer", "prison-b")
        directory.grant("sup-a", "supervisor", "prison-a")

    def mediation(self, owner="wang"):
        state = self.service.create_session(
            "mediation",
            actor=f"staff:{owner}",
            title="调解 Review test",
            case_number="R-1",
            participants=[
                ParticipantSpec("Wang", "mediator"),
                ParticipantSpec("Party A", "party", "A"),
                ParticipantSpec("Party B", "party", "B"),
            ],
        )
        return state, self._segments(state, ("party",))

    def visitation(self, site="prison-a"):
        state = self.service.create_session(
            "visitation",
            actor="system",
            title="会见 Visit",
            case_number=f"{site}/2026-0042",
            participants=[
                ParticipantSpec("Visitor", "visitor"),
                ParticipantSpec("Inmate", "inmate"),
            ],
        )
        return state, self._segments(state, ("visitor", "inmate"))

    def _segments(self, state, roles):
        segs = []
        for p in state.participants.values():
            if p.role in roles:
                for i in range(2):
                    segs.append(
                        record(self.service, self.root, self.master, state.id, p.id, i, start=i)
                    )
        return segs

    def seq(self, sid):
        return self.service.state(sid).seq


@pytest.fixture
def world(running):  # noqa: F811
    w = World(running)
    yield w
    w.visits.close()


async def open_ticket(http, url, sid, action="play", reason="appeal hearing 2026-12"):
    async with http.get(f"{url}/review/{sid}") as r:
        assert r.status == 200
        csrf = csrf_of(await r.text())
    async with http.post(
        f"{url}/review/{sid}/access",
        data={"csrf": csrf, "reason": reason, "action": action},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"]


async def test_mediator_states_a_reason_plays_in_sync_and_is_logged(world):
    url = world.run.url
    state, segs = world.mediation()
    sid = state.id
    async with logged_in(url, "wang") as http:
        async with http.get(f"{url}/review/{sid}") as r:
            html = await r.text()
            assert r.status == 200
            assert "录像审阅 Recording review" in html and "Reason for viewing" in html
            assert "<script" not in html and " style=" not in html and "onclick" not in html
            for s in segs:
                assert s["sha256"][:16] in html
        before = world.seq(sid)
        # a reason is required, and an unknown action is refused: nothing recorded
        async with http.post(
            f"{url}/review/{sid}/access",
            data={"csrf": csrf_of(html), "reason": " ", "action": "play"},
        ) as r:
            assert r.status == 400
        async with http.post(
            f"{url}/review/{sid}/access",
            data={"csrf": csrf_of(html), "reason": "appeal", "action": "delete"},
        ) as r:
            assert r.status == 400
        async with http.post(
            f"{url}/review/{sid}/access", data={"reason": "appeal", "action": "play"}
        ) as r:
            assert r.status == 403  # no CSRF token
        assert world.seq(sid) == before

        player = await open_ticket(http, url, sid)
        accessed = [e for e in world.service.events(sid) if e.type == "recording.accessed"]
        assert len(accessed) == 1
        e = accessed[0]
        assert e.actor == "staff:wang" and e.data["reason"] == "appeal hearing 2026-12"
        assert e.data["action"] == "play" and e.data["grant"] == "mediator"
        assert sorted(e.data["files"]) == sorted(s["file"] for s in segs)

        async with http.get(url + player) as r:
            html = await r.text()
            assert r.status == 200
            assert "<script src='/static/review.js' defer></script>" in html
            assert html.count("<script") == 1 and " style=" not in html
            srcs = re.findall(r"data-src='([^']+)'", html)
            assert len(srcs) == len(segs)
            assert html.count("class='track'") == 2  # one column per party, side by side
        for src, seg in zip(sorted(srcs), sorted(segs, key=lambda s: s["file"]), strict=True):
            async with http.get(url + src) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "video/webm"
                assert r.headers["Content-Disposition"] == "inline"
                body = await r.read()
            assert body == seg["plain"]
            frames = list(av.open(io.BytesIO(body)).decode(video=0))
            assert len(frames) == 10 and abs(frames[0].time - seg["media_start"]) < 0.01
        async with http.get(url + srcs[0], headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206 and len(await r.read()) == 10
            assert r.headers["Content-Range"].startswith("bytes 10-19/")
        async with http.get(url + srcs[0], headers={"Range": "bytes=999999-"}) as r:
            assert r.status == 416

        # download: its own reason, its own record, files as attachments
        page = await open_ticket(http, url, sid, "download", "copy for the court")
        async with http.get(url + page) as r:
            links = re.findall(r"href='(/review/[^']+/segment/[^']+)'", await r.text())
        async with http.get(url + links[0]) as r:
            assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        log = [e for e in world.service.events(sid) if e.type == "recording.accessed"]
        assert [e.data["action"] for e in log] == ["play", "download"]
        async with http.get(f"{url}/review/{sid}") as r:
            html = await r.text()
            assert "copy for the court" in html and "appeal hearing 2026-12" in html
    assert not verify_chain(world.service.events(sid))


async def test_nobody_else_fetches_a_segment(world):
    url = world.run.url
    state, segs = world.mediation()
    sid = state.id
    async with logged_in(url, "wang") as wang:
        player = await open_ticket(wang, url, sid)
        async with wang.get(url + player) as r:
            src = re.findall(r"data-src='([^']+)'", await r.text())[0]
        ticket = player.rsplit("/", 1)[1]
        before = world.seq(sid)

        # not logged in (a party's browser with an invitation token, a guessed URL)
        _, token = world.run.token(state, "party")
        async with jar() as party:
            for path in (
                src,
                f"{src}?token={token}",
                f"/review/{sid}",
                player,
                f"/review/{sid}/segment/{'x' * 32}/{segs[0]['file']}",
            ):
                async with party.get(url + path, allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/login", path
            async with party.post(
                f"{url}/review/{sid}/access",
                data={"reason": "curious", "action": "play"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303

        # another mediator, an unrelated reviewer or supervisor: forbidden, even with the ticket
        for who in ("li", "rev-a", "boss"):
            async with logged_in(url, who) as http:
                async with http.get(url + src) as r:
                    assert r.status == 403, who
                async with http.get(f"{url}/review/{sid}/play/{ticket}") as r:
                    assert r.status == 403, who
                if who != "boss":  # a supervisor sees the page (hold only), never a player
                    async with http.get(f"{url}/review/{sid}") as r:
                        assert r.status == 403, who
                else:
                    async with http.get(f"{url}/review/{sid}") as r:
                        html = await r.text()
                        assert "You may set a legal hold only" in html
                        assert "Reason for viewing" not in html

        # the mediator without a ticket, with a guessed ticket, a file outside the ticket
        async with wang.get(f"{url}/review/{sid}/segment/{'A' * 32}/{segs[0]['file']}") as r:
            assert r.status == 403
        async with wang.get(f"{url}/review/{sid}/segment/{ticket}/datakey.json") as r:
            assert r.status == 403
        async with wang.get(f"{url}/review/{sid}/segment/{ticket}/..%2Fledger.sqlite3") as r:
            assert r.status in (403, 404)
        async with wang.get(f"{url}/review/s-0000000000000000") as r:
            assert r.status == 404
        # a ticket is for one session only
        other, _ = world.mediation()
        async with wang.get(f"{url}/review/{other.id}/segment/{ticket}/{segs[0]['file']}") as r:
            assert r.status == 403
        assert world.seq(sid) == before  # no refusal wrote anything

        # logged out: the cookie opens nothing any more
        cookie = next(c for c in wang.cookie_jar if c.key == "parley_staff").value
        async with wang.get(f"{url}/review/{sid}") as r:
            csrf = csrf_of(await r.text())
        async with wang.post(f"{url}/logout", data={"csrf": csrf}, allow_redirects=False):
            pass
    async with jar() as stale:
        stale.cookie_jar.update_cookies({"parley_staff": cookie})
        async with stale.get(url + src, allow_redirects=False) as r:
            assert r.status == 303


async def test_visitation_reviewers_by_site_and_a_changed_file(world):
    url = world.run.url
    state, segs = world.visitation("prison-a")
    sid = state.id
    async with logged_in(url, "rev-b") as http:  # a reviewer of another prison
        async with http.get(f"{url}/review/{sid}") as r:
            assert r.status == 403
    async with logged_in(url, "rev-a") as http:
        player = await open_ticket(http, url, sid, reason="R3 review within two days")
        e = [e for e in world.service.events(sid) if e.type == "recording.accessed"][-1]
        assert e.actor == "staff:rev-a" and e.data["grant"] == "reviewer"
        async with http.get(url + player) as r:
            srcs = re.findall(r"data-src='([^']+)'", await r.text())
        # a stored file changed on disk: refused, never served
        path = world.root / sid / segs[0]["file"]
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        target = next(s for s in srcs if s.endswith(segs[0]["file"]))
        async with http.get(url + target) as r:
            assert r.status == 410 and "changed" in await r.text()
    async with logged_in(url, "root") as http:  # an admin reviews anything
        await open_ticket(http, url, sid, reason="audit by the bureau")


async def post_hold(http, url, sid, hold, reason="court order 7/2026"):
    async with http.get(f"{url}/review/{sid}") as r:
        if r.status != 200:
            return r.status
        csrf = csrf_of(await r.text())
    async with http.post(
        f"{url}/review/{sid}/hold",
        data={"csrf": csrf, "hold": hold, "reason": reason},
        allow_redirects=False,
    ) as r:
        return r.status


async def test_legal_hold_is_set_and_lifted_by_supervisors_only(world):
    url = world.run.url
    med, _ = world.mediation()
    visit, _ = world.visitation("prison-a")
    for who, sid in (("wang", med.id), ("rev-a", visit.id), ("li", med.id)):
        async with logged_in(url, who) as http:
            before = world.seq(sid)
            assert await post_hold(http, url, sid, "on") == 403, who
            assert world.seq(sid) == before and world.service.state(sid).legal_hold is None
    async with logged_in(url, "boss") as http:
        assert await post_hold(http, url, med.id, "on", "x") == 400  # a reason is needed
        assert await post_hold(http, url, med.id, "maybe") == 400
        assert await post_hold(http, url, med.id, "on") == 303
        assert await post_hold(http, url, med.id, "on") == 409  # already on
        async with http.get(f"{url}/review/{med.id}") as r:
            assert "Legal hold since" in await r.text()
        assert await post_hold(http, url, visit.id, "on") == 403  # no grant at the prison
    async with logged_in(url, "sup-a") as http:
        assert await post_hold(http, url, visit.id, "on") == 303
        assert await post_hold(http, url, visit.id, "off", "order lifted") == 303
    held = [e for e in world.service.events(med.id) if e.type == "recording.held"]
    assert [e.actor for e in held] == ["staff:boss"]
    types = [e.type for e in world.service.events(visit.id) if e.type.startswith("recording.")]
    assert types[-2:] == ["recording.held", "recording.released"]
