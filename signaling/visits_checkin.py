"""The counter's check-in page (R6): one form per visitor of an approved booking.

Only an operator of the booking's bureau may open or post it (``booking.checkin`` at the bureau,
asked before the booking is described, so another site learns nothing). The identity number typed
from the card is compared and forgotten (visits/checkin.py); the page shows only the last four
characters of each approved record, so the operator can tell whose card is whose.
"""

from __future__ import annotations

from aiohttp import web

from signaling.pages import esc
from signaling.visits_pages import csrf_field, number
from visits.access import require
from visits.checkin import METHODS, CheckIns

METHOD_TEXT = {
    "id_card": "身份证件与本人相符 ID card seen, face matches",
    "id_card_and_record": "并与备案照片比对 also compared with the approved record's photo",
}


class CheckInPages:
    def __init__(self, console) -> None:
        self.c = console
        self.checks = CheckIns(console.res.store, console.res)

    def _booking(self, request, grants):
        b = self.c._booking(request)
        bureau, _ = self.c._sites_of(b)
        require(grants, "booking.checkin", bureau)
        return b, bureau

    async def view(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        b, bureau = self._booking(request, grants)
        return self.c._page("到场核验 Check-in", self._body(b, sess.csrf, bureau), account, sess)

    def _body(self, b, csrf: str, bureau: str) -> str:
        inmate = self.c.directory.inmate(b.inmate)
        done = {(c.worker, c.visitor): c for c in self.checks.checked(b.id)}
        visitors = {v.id: v for v in self.c.directory.visitors(b.inmate)}
        methods = "".join(f"<option value='{m}'>{esc(METHOD_TEXT[m])}</option>" for m in METHODS)
        rows = []
        # relatives, then help-education workers (帮教): (field, id, who)
        workers = {w[0]: w for w in self.c.res.workers_for(b.inmate, bureau)}
        people = [
            ("visitor", vid, f"{esc(v.name)} · {esc(v.relationship)} · ****{esc(v.id_last4)}")
            for vid, v in ((vid, visitors.get(vid)) for vid in b.visitors)
            if v is not None
        ] + [
            (
                "worker",
                wid,
                f"{esc(workers[wid][1])} · 帮教 help-education · {esc(workers[wid][3])}"
                if wid in workers
                else f"帮教 help-education #{wid}",
            )
            for wid in b.workers
        ]
        for field, vid, who in people:
            if (field == "worker", vid) in done:
                c = done[(field == "worker", vid)]
                rows.append(
                    f"<li data-{field}='{vid}' class='checked'>{who} — ✓ 已核验 checked "
                    f"{esc(c.at)} · {esc(c.method)} · {esc(c.by)}</li>"
                )
                continue
            rows.append(
                f"<li data-{field}='{vid}'>{who}<form method='post' class='stack' "
                f"action='/visits/bookings/{b.id}/checkin'>{csrf_field(csrf)}"
                f"<input type='hidden' name='{field}' value='{vid}'>"
                "<label>证件号码 ID number<input name='id_number' maxlength='32' required "
                "autocomplete='off'></label>"
                f"<label>核验方式 Method<select name='method'>{methods}</select></label>"
                "<label class='inline'><input type='checkbox' name='pledge' value='yes' required>"
                "已签署会见须知承诺书 Signed the visit rules pledge</label>"
                "<button type='submit' class='primary'>核验 Check in</button></form></li>"
            )
        return (
            f"<h1>到场核验 Check-in · #{b.id}</h1>"
            f"<p>{b.start:%Y-%m-%d %H:%M} · {b.minutes}′ · "
            f"{esc(inmate.name if inmate else '')} · {esc(b.bureau_terminal)} ↔ "
            f"{esc(b.facility_terminal)}</p>"
            "<p>只有经核验的来访人可以进入会见。Only checked-in visitors may take part.</p>"
            f"<ul class='checkins'>{''.join(rows)}</ul>"
        )

    async def post(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        b, _ = self._booking(request, grants)
        worker = "worker" in fields  # a help-education worker of the booking
        self.checks.check_in(
            f"staff:{account.username}",
            b.id,
            number(fields.get("worker" if worker else "visitor", ""), "visitor"),
            fields.get("id_number"),
            method=fields.get("method", ""),
            pledge=fields.get("pledge") == "yes",
            now=self.c.now(),
            worker=worker,
        )
        raise web.HTTPSeeOther(f"/visits/bookings/{b.id}/checkin")

    def routes(self, guard) -> list[web.RouteDef]:
        return [
            web.get("/visits/bookings/{bid}/checkin", guard(self.view)),
            web.post("/visits/bookings/{bid}/checkin", guard(self.post)),
        ]
