"""Legal-aid requests from relatives, filed at the bureau's visitation counter (docs/desk.md).

The family services of remote visitation and the duty-lawyer desk meet here: at a bureau, the
counter's operator (the grant that books visits for the family, ``booking.request``) finds the
inmate, picks one of the inmate's approved relatives (approval still valid), and files a
request — topic, a one-line question, the relative's mobile number, the hall whose lawyers
answer. It becomes a call-back ticket on that hall's desk, flagged "legal aid (visitation)"; the
lawyer calls back by video from the desk (signaling/desk.py ``call_back``). A refusal is the
visitation pages' bilingual error page with its code (a desk refusal is turned into one).
"""

from __future__ import annotations

from aiohttp import web

from desk.errors import DeskError
from desk.queue import TOPICS
from signaling.desk import TOPIC_LABELS, ConsultDesk
from signaling.pages import esc
from signaling.visits_pages import csrf_field, inmate_search, number, relative_options
from visits.directory import check_visitor
from visits.model import VisitError

GRANT = "booking.request"  # the bureau's counter, where the family sits


class LegalAidPages:
    def __init__(self, console, desk: ConsultDesk, public_url: str | None = None) -> None:
        self.c, self.desk, self.public_url = console, desk, public_url

    def _base(self, request: web.Request) -> str:
        return self.public_url or f"{request.scheme}://{request.host}"

    async def page(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site = self.c._site(grants, GRANT, request.match_info["site"])
        facilities = [s for s in self.c.directory.sites() if s.facility]
        q = request.query
        body = inmate_search("法律援助申请 Legal-aid request", site, q, facilities)
        if q.get("filed"):
            body += (
                "<p class='ok' role='status' id='filed'>已登记，值班律师将视频回电。"
                f"Filed (no. {esc(q.get('filed', ''))[:12]}): a duty lawyer will call back by "
                "video.</p>"
            )
        if q.get("number"):
            body += self._form(site, q, sess.csrf)
        return self.c._page("法律援助申请 Legal-aid request", body, account, sess)

    def _form(self, site, q, csrf: str) -> str:
        inmate = self.c._inmate_by_number(q.get("facility"), q.get("number"))
        relatives = relative_options(self.c.directory.visitors(inmate.id))
        points = "".join(
            f"<option value='{esc(p.id)}'>{esc(p.name)}</option>" for p in self.desk.store.points()
        )
        topics = "".join(f"<option value='{t}'>{esc(TOPIC_LABELS[t])}</option>" for t in TOPICS)
        head = f"<h2>{esc(inmate.name)} · {esc(inmate.facility)} {esc(inmate.number)}</h2>"
        if not relatives or not points:
            return head + (
                "<p>没有备案亲属，或尚未设置法律服务点。The inmate has no approved relative, or no "
                "legal service point is set up.</p>"
            )
        return head + (
            f"<form method='post' action='/visits/sites/{esc(site.id)}/legal-aid' "
            f"class='stack' id='legal-aid-form'>{csrf_field(csrf)}"
            f"<input type='hidden' name='inmate' value='{inmate.id}'>"
            f"<label>申请人（备案亲属）Applicant (an approved relative)<select name='visitor'>"
            f"{relatives}</select></label>"
            f"<label>问题类型 Topic<select name='topic'>{topics}</select></label>"
            "<label>一句话说明问题 The question, in one line<input name='question' "
            "maxlength='200' required></label>"
            "<label>回电手机号 Mobile number for the call-back<input name='phone' "
            "maxlength='32' required inputmode='tel'></label>"
            f"<label>法律服务点 Legal service point<select name='point'>{points}</select></label>"
            "<label class='check'><input type='checkbox' name='consent' value='yes' required> "
            "申请人同意律师视频回电 The applicant agrees to a video call-back</label>"
            "<button type='submit' class='primary'>提交申请 File the request</button></form>"
        )

    async def file(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site = self.c._site(grants, GRANT, request.match_info["site"])
        inmate = self.c.directory.inmate(number(fields.get("inmate"), "inmate"))
        if inmate is None:
            raise VisitError("not_found", "no such inmate")
        vid = number(fields.get("visitor"), "visitor")
        with self.c.directory.store.tx() as db:  # on this inmate's list, approval still valid
            relationship = check_visitor(db, vid, inmate.id, self.c.now().date(), noun="relative")
        if relationship == "lawyer":
            raise VisitError("invalid", "visitor: the inmate's lawyer is no relative")
        if fields.get("consent") != "yes":
            raise VisitError("invalid", "consent: the applicant must agree to a video call-back")
        visitor = next(v for v in self.c.directory.visitors(inmate.id) if v.id == vid)
        try:
            tid = await self.desk.legal_aid_request(
                str(fields.get("point", "")),
                name=visitor.name,
                phone_raw=fields.get("phone"),
                topic=str(fields.get("topic", "")),
                text=str(fields.get("question", "")),
                by=f"staff:{account.username}",
                link_base=self._base(request),
            )
        except DeskError as exc:
            raise VisitError(
                "invalid" if exc.code not in ("not_found",) else "not_found", exc.message
            ) from None
        raise web.HTTPSeeOther(
            f"/visits/sites/{site.id}/legal-aid?facility={inmate.facility}"
            f"&number={inmate.number}&filed={tid}"
        )

    def routes(self) -> list[web.RouteDef]:
        g = self.c._guard
        return [
            web.get("/visits/sites/{site}/legal-aid", g(self.page)),
            web.post("/visits/sites/{site}/legal-aid", g(self.file)),
        ]
