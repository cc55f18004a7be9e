"""The console as the mediator reads it: open and ended cases apart; an ended case shows its
outcome and, once sealed, the signed agreement PDF and evidence.zip to download; sides and rooms
in words (申请方 Applicant (side A)), never a raw id; revoking a link asks first; no Language
field that nothing uses."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest

from rooms.commands import decode_command
from tests.integration.signaling.test_agreement_session import TERMS, session_with_signers
from tests.integration.signaling.test_console import add_user, csrf_of, login, session_http

pytestmark = pytest.mark.slow


def section(html: str, heading: str) -> str:
    """The HTML from the <h2> that contains ``heading`` to the next <h2>."""
    start = html.index(heading)
    end = html.find("<h2", start)
    return html[start : end if end > 0 else None]


async def test_ended_sealed_case_shows_outcome_and_downloads(running):
    add_user(running, "test")
    add_user(running, "li")
    state, (med, a, b) = await session_with_signers(running)
    r = await med.call(
        "agreement", {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    )
    assert r["ok"], r
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    for s in (med, a, b):
        await s.enrol()
    for s in (a, b, med):
        await s.sign()
    assert (await med.call("agreement", {"action": "seal"}))["ok"]
    sealed_pdf = await a.pdf()
    running.service.execute(
        state.id, med.pid, decode_command({"type": "end_session", "reason": "agreement"})
    )
    open_state = running.mediation(parties=1)  # another case, still open

    async with session_http() as http:
        await login(http, running.url, username="test")
        async with http.get(running.url + "/console") as r:
            index = await r.text()
        ended = section(index, "已结束的调解 Ended cases")
        assert f"/console/sessions/{state.id}'" in ended
        assert "已签署并盖章 Signed and sealed" in ended
        assert f"/console/sessions/{open_state.id}'" in section(index, "进行中 Open cases")
        assert f"/console/sessions/{open_state.id}'" not in ended

        page_url = f"{running.url}/console/sessions/{state.id}"
        async with http.get(page_url) as r:
            html = await r.text()
        assert "已结束 Ended" in html and "已签署并盖章 Signed and sealed" in html
        assert "id='enter'" not in html  # an ended case cannot be entered
        assert "/reissue/" not in html and "/j/" not in html  # no live links to hand out
        assert "Party A" in html and "申请方 Applicant (side A)" in html
        pdf_href = re.search(r"href='(/console/sessions/[^']+/agreement\.pdf)'", html).group(1)
        zip_href = re.search(r"href='(/console/sessions/[^']+/evidence\.zip)'", html).group(1)
        async with http.get(running.url + pdf_href) as r:
            assert r.status == 200 and r.content_type == "application/pdf"
            body = await r.read()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(sealed_pdf).hexdigest()
        async with http.get(running.url + zip_href) as r:
            assert r.status == 200 and r.content_type == "application/zip"
            names = zipfile.ZipFile(io.BytesIO(await r.read())).namelist()
        assert any(n.endswith(".pdf") for n in names), names

    async with session_http() as other:  # not this mediator's case
        await login(other, running.url, username="li")
        async with other.get(running.url + pdf_href) as r:
            assert r.status == 403
        async with other.get(running.url + zip_href) as r:
            assert r.status == 403


async def test_ended_without_agreement_says_so_and_offers_no_download(running):
    add_user(running, "test")
    state = running.mediation(parties=2)
    med = next(p.id for p in state.participants.values() if p.role == "mediator")
    running.service.execute(
        state.id, med, decode_command({"type": "end_session", "reason": "no agreement"})
    )
    async with session_http() as http:
        await login(http, running.url, username="test")
        async with http.get(f"{running.url}/console/sessions/{state.id}") as r:
            html = await r.text()
        assert "未达成协议 No agreement" in html
        assert "agreement.pdf" not in html and "evidence.zip" not in html
        async with http.get(f"{running.url}/console/sessions/{state.id}/agreement.pdf") as r:
            assert r.status == 404
        async with http.get(f"{running.url}/console/sessions/{state.id}/evidence.zip") as r:
            assert r.status == 409


async def test_open_case_words_revoke_asks_first_and_no_language_field(running):
    add_user(running, "test")
    state = running.mediation(parties=2)
    a = next(p for p in state.participants.values() if p.side == "A")
    async with session_http() as http:
        await login(http, running.url, username="test")
        async with http.get(running.url + "/console") as r:
            index = await r.text()
        assert "name='lang'" not in index and "语言 Language" not in index
        page_url = f"{running.url}/console/sessions/{state.id}"
        async with http.get(page_url) as r:
            html = await r.text()
        assert "申请方 Applicant (side A)" in html and "被申请方 Respondent (side B)" in html
        assert "· A" not in html and "· B" not in html
        assert "waiting" not in re.sub(r"<[^>]+>", "", html).replace("等候室 Waiting room", "")
        # the revoke control is red and leads to a question, not straight to the action
        revoke = re.search(rf"<a class='button danger' href='([^']+/reissue/{a.id})'", html)
        assert revoke, html
        async with http.get(running.url + revoke.group(1)) as r:
            ask = await r.text()
        assert r.status == 200 and "Party A" in ask
        assert "作废" in ask and "Revoke" in ask and "取消 Cancel" in ask
        assert "class='danger big'" in ask
        async with http.post(
            running.url + revoke.group(1), data={"csrf": csrf_of(ask)}, allow_redirects=False
        ) as r:
            assert r.status == 303
        assert running.service.state(state.id).participants[a.id].invitation_gen == 1
