"""A relative's legal-aid request from the bureau's visitation counter to the duty-lawyer desk,
over real HTTP: the counter finds the inmate, files for an approved relative, the request is a
flagged call-back on the hall's desk, the relative's phone gets the address of their page; the
lawyer calls back by video (a consultation session, the call's link by text, the page leads to
the call; their page's own address keeps working). Bad input and the wrong people are refused,
and nothing is filed."""

from __future__ import annotations

import re

import aiohttp

from server import CONSULT
from tests.integration.desk.helpers import Lawyer, call, setup_desk, spool
from tests.integration.visits.conftest import province, staff_session  # noqa: F401 - fixture

PHONE = "13900139001"


def _links(p, phone):
    return [
        re.search(r"/consult/t/([\w-]+)", text).group(1)
        for to, _, text in spool(p).messages()
        if to == phone and "/consult/t/" in text
    ]


async def test_the_counter_files_and_the_lawyer_calls_back_by_video(province):  # noqa: F811
    p = province
    store = setup_desk(p, lawyers=("li",), on_shift=("li",))
    op, csrf = await staff_session(p.url, "op")
    async with op:
        async with op.get(f"{p.url}/visits/sites/bureau-x") as r:
            assert "/visits/sites/bureau-x/legal-aid" in await r.text()
        url = f"{p.url}/visits/sites/bureau-x/legal-aid"
        async with op.get(url, params={"facility": "prison-a", "number": "A-001"}) as r:
            html = await r.text()
        assert r.status == 200 and "legal-aid-form" in html
        inmate = re.search(r"name='inmate' value='(\d+)'", html).group(1)

        def form(**kw):
            return {
                "csrf": csrf,
                "inmate": inmate,
                "visitor": str(p.ids["a1v0"]),
                "topic": "family",
                "question": "父亲服刑期间，房屋继承怎么办？",
                "phone": PHONE,
                "point": "hall-1",
                "consent": "yes",
            } | kw

        no_consent = form()
        del no_consent["consent"]
        for bad, status in (
            (form(visitor=str(p.ids["b1v0"])), 400),  # another inmate's relative
            (form(visitor="x"), 400),
            (form(inmate="99999"), 404),
            (no_consent, 400),
            (form(phone="12345"), 400),
            (form(question="   "), 400),
            (form(question="x" * 201), 400),
            (form(topic="tax"), 400),
            (form(point="nowhere"), 404),
            (form(csrf="forged"), 403),
        ):
            async with op.post(url, data=bad, allow_redirects=False) as r:
                assert r.status == status, (bad, await r.text())
        assert store.callbacks() == []

        async with op.post(url, data=form(), allow_redirects=False) as r:
            assert r.status == 303
            assert "filed=" in r.headers["Location"]
    [t] = store.callbacks()
    assert (t.flag, t.name, t.phone, t.topic) == (
        "legal_aid_visitation",
        "家属 a10",
        PHONE,
        "family",
    )
    assert t.question == "父亲服刑期间，房屋继承怎么办？"
    assert store.log_rows(t.id)[-1][2:4] == ("staff:op", "filed_at_counter")
    [first] = _links(p, PHONE)

    officer, _ = await staff_session(p.url, "off-a")  # a prison's officer: not the counter
    async with officer:
        async with officer.get(f"{p.url}/visits/sites/bureau-x/legal-aid") as r:
            assert r.status == 403

    li = await Lawyer(p, "li").login()
    async with aiohttp.ClientSession() as http:
        try:
            status, desk = await li.get()
            [row] = desk["desk"]["callbacks"]
            assert row["flag"] == "legal_aid_visitation" and row["phone"] == PHONE
            status, data = await li.post("callback", {"ticket": t.id}, csrf=False)
            assert status == 403 and data["error"]["code"] == "csrf"
            for payload, code in (({"ticket": "1"}, "invalid"), ({}, "invalid")):
                status, data = await li.post("callback", payload)
                assert status == 400 and data["error"]["code"] == code
            status, data = await li.post("callback", {"ticket": 999})
            assert status == 404
            status, data = await li.post("callback", {"ticket": t.id})
            assert status == 200, data
            assert data["current"]["join_path"].startswith("/j/")
            status, data = await li.post("callback", {"ticket": t.id})
            assert status == 404  # no longer waiting for a call-back
            calling = [
                re.search(r"/j/([\w.-]+)", text).group(1)
                for to, _, text in spool(p).messages()
                if to == PHONE and "/j/" in text
            ]
            assert len(calling) == 1  # the call's link, by text
            inv = p.app[CONSULT].signer.verify(calling[0])
            assert inv.role == "citizen"
            status, page = await call(http, "GET", f"{p.url}/consult/api/tickets/{first}")
            assert status == 200 and page["ticket"]["state"] == "serving"  # the page still works
            assert page["ticket"]["join_path"].startswith("/j/")
            assert p.app[CONSULT].signer.verify(page["ticket"]["join_path"][3:]).participant == (
                inv.participant
            )
            session = p.app[CONSULT].store.ticket(t.id).session
            assert p.app[CONSULT].service.state(session).kind == "consultation"
        finally:
            await li.close()
