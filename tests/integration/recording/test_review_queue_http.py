"""Rule R3 on a real server: the review queue per site, overdue reviews for supervisors, and a
reviewer marking a visit reviewed (``recording.reviewed``) — with the refusals. Visits that ended
three days ago are made by running the session service on a clock set back three days."""

from __future__ import annotations

import time

from rooms.commands import decode_command
from rooms.service import ParticipantSpec
from tests.integration.recording.segments import record
from tests.integration.recording.test_review import (  # noqa: F401 - fixtures
    World,
    csrf_of,
    jar,
    logged_in,
    running,
    world,
)

DAY = 86400.0


def visit(w: World, site: str, *, watched: bool = False, days_ago: float = 0.0) -> str:
    """A recorded visit that ended ``days_ago`` days ago; ``watched``: an officer was connected."""
    real = w.service._clock
    w.service._clock = lambda: real() - days_ago * DAY
    try:
        state = w.service.create_session(
            "visitation",
            actor="system",
            title=f"会见 Visit {site}",
            case_number=f"{site}/{time.monotonic_ns()}",
            participants=[
                ParticipantSpec("Visitor", "visitor"),
                ParticipantSpec("Inmate", "inmate"),
                ParticipantSpec("Officer", "officer"),
            ],
        )
        ids = {p.role: p.id for p in state.participants.values()}
        if watched:
            w.service.execute(
                state.id,
                "system",
                decode_command({"type": "connect", "participant": ids["officer"]}),
            )
        record(w.service, w.root, w.master, state.id, ids["visitor"], 0)
        w.service.execute(state.id, "staff:sup-a", decode_command({"type": "end_session"}))
    finally:
        w.service._clock = real
    return state.id


async def _get(http, url, path):
    async with http.get(url + path, allow_redirects=False) as r:
        return r.status, await r.text()


async def test_queue_overdue_and_marking_reviewed(world: World):  # noqa: F811
    url = world.run.url
    old = visit(world, "prison-a", days_ago=3)  # overdue
    new = visit(world, "prison-a")  # due in two days
    watched = visit(world, "prison-a", watched=True, days_ago=3)  # no review needed
    other = visit(world, "prison-b", days_ago=3)

    def case(sid):
        return world.service.state(sid).case_number

    async with logged_in(url, "rev-a") as http:
        status, html = await _get(http, url, "/review")
        assert status == 200 and "审阅队列 Review queue" in html
        assert case(old) in html and case(new) in html
        assert case(watched) not in html and case(other) not in html
        assert "已逾期 Overdue" in html and "待审阅 To review" in html
        assert "id='overdue'" not in html  # a reviewer is no supervisor
        # the visit's page says why, and offers the form
        status, html = await _get(http, url, f"/review/{watched}")
        assert (
            "Watched live by an officer: no review needed" in html and "id='reviewed'" not in html
        )
        status, html = await _get(http, url, f"/review/{old}")
        assert "已逾期 Overdue" in html and "id='reviewed'" in html
        csrf = csrf_of(html)

        before = world.seq(old)
        for data, code in (
            ({"outcome": "fine", "note": "watched it all"}, 400),
            ({"outcome": "flagged", "note": "  "}, 400),
            ({"outcome": "flagged", "note": "x" * 2001}, 400),
            ({"outcome": "flagged"}, 400),
        ):
            async with http.post(
                f"{url}/review/{old}/reviewed", data={"csrf": csrf, **data}, allow_redirects=False
            ) as r:
                assert r.status == code, data
        async with http.post(
            f"{url}/review/{old}/reviewed",
            data={"outcome": "flagged", "note": "no csrf"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        async with http.post(
            f"{url}/review/{watched}/reviewed",
            data={"csrf": csrf, "outcome": "no_concern", "note": "nothing to do"},
        ) as r:
            assert r.status == 409  # watched live: no task
        async with http.post(
            f"{url}/review/nope/reviewed", data={"csrf": csrf, "outcome": "flagged", "note": "x1"}
        ) as r:
            assert r.status == 404
        async with http.post(
            f"{url}/review/{other}/reviewed",
            data={"csrf": csrf, "outcome": "flagged", "note": "other prison"},
        ) as r:
            assert r.status == 403  # another site
        assert world.seq(old) == before

        async with http.post(
            f"{url}/review/{old}/reviewed",
            data={"csrf": csrf, "outcome": "flagged", "note": "raised voice at 02:10; see log"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == f"/review/{old}#r3"
        [done] = [e for e in world.service.events(old) if e.type == "recording.reviewed"]
        assert done.actor == "staff:rev-a" and done.data["outcome"] == "flagged"
        assert done.data["note"] == "raised voice at 02:10; see log"
        assert done.data["grant"] == "reviewer"
        async with http.post(
            f"{url}/review/{old}/reviewed",
            data={"csrf": csrf, "outcome": "no_concern", "note": "again"},
        ) as r:
            assert r.status == 409  # reviewed once
        status, html = await _get(http, url, f"/review/{old}")
        assert "逾期后审阅 Reviewed late" in html and "raised voice at 02:10" in html

    async with logged_in(url, "sup-a") as http:
        status, html = await _get(http, url, "/review")
        assert status == 200 and "id='overdue'" in html
        overdue_part = html.split("id='overdue'", 1)[1]
        assert case(old) in overdue_part and "Reviewed late" in overdue_part
        assert case(new) not in overdue_part

    async with logged_in(url, "rev-b") as http:
        status, html = await _get(http, url, "/review")
        assert case(other) in html and case(old) not in html and case(new) not in html

    # a mediator without a reviewer grant; a mediation is never R3
    async with logged_in(url, "wang") as http:
        assert (await _get(http, url, "/review"))[0] == 403
        state, _ = world.mediation()
        status, html = await _get(http, url, f"/review/{state.id}")
        assert "rule R3" not in html
        async with http.post(
            f"{url}/review/{state.id}/reviewed",
            data={"csrf": csrf_of(html), "outcome": "no_concern", "note": "a mediation"},
        ) as r:
            assert r.status == 409
    async with jar() as anon:
        status, _ = await _get(anon, url, "/review")
        assert status == 303


def _gauge(text: str, name: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(f"{name} ")]
    return float(line.split()[-1])


async def test_overdue_reviews_on_metrics(world: World):  # noqa: F811
    """R3's overdue count (and the due one) on /metrics, node-wide, following the ledger: a
    review takes a visit off, a watched visit and a mediation never count."""
    url = world.run.url
    old = visit(world, "prison-a", days_ago=3)
    visit(world, "prison-b", days_ago=2.5)
    visit(world, "prison-a")
    visit(world, "prison-a", watched=True, days_ago=3)
    world.mediation()

    async def gauges():
        async with jar() as http:
            status, text = await _get(http, url, "/metrics")
        assert status == 200, text
        return _gauge(text, "parley_review_overdue"), _gauge(text, "parley_review_due")

    assert await gauges() == (2, 1)
    world.service.execute(
        old,
        "staff:rev-a",
        decode_command(
            {
                "type": "review_recording",
                "outcome": "no_concern",
                "note": "all fine",
                "grant": "reviewer",
            }
        ),
    )
    assert await gauges() == (1, 1)


async def test_the_consoles_link_to_the_queue_and_to_a_recording(world: World):  # noqa: F811
    url = world.run.url
    for user, path, linked in (
        ("rev-a", "/visits", True),  # a reviewer grant
        ("sup-a", "/visits", True),  # a supervisor grant
        ("wang", "/visits", False),  # no grant: no queue
        ("root", "/console", True),  # an admin
        ("wang", "/console", False),  # a mediator
    ):
        async with logged_in(url, user) as http:
            status, html = await _get(http, url, path)
            assert status == 200, (user, path)
            assert ("href='/review'" in html) is linked, (user, path)
            if linked:
                assert (await _get(http, url, "/review"))[0] == 200  # the link leads somewhere
    recorded, _ = world.mediation()
    unrecorded = world.service.create_session(
        "mediation",
        actor="staff:wang",
        title="Not recorded",
        case_number="R-3",
        participants=[ParticipantSpec("Wang", "mediator"), ParticipantSpec("A", "party", "A")],
    )
    async with logged_in(url, "wang") as http:
        status, html = await _get(http, url, f"/console/sessions/{recorded.id}")
        assert status == 200 and f"href='/review/{recorded.id}'" in html
        assert (await _get(http, url, f"/review/{recorded.id}"))[0] == 200
        status, html = await _get(http, url, f"/console/sessions/{unrecorded.id}")
        assert status == 200 and "/review/" not in html
