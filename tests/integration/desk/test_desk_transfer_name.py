"""After a transfer the citizen's call names the colleague: the desk hands over the lawyer's
place with the colleague's name (rooms' ``reissue_invitation`` by the colleague's staff actor),
and the citizen's view of the call (what their page's state carries) has that name."""

from __future__ import annotations

import aiohttp

from tests.integration.desk.helpers import Lawyer, bot_from_path, queue_citizen, setup_desk, ticket
from tests.integration.signaling.conftest import until


def citizen_in_joint(running, sid) -> bool:
    state = running.service.state(sid)
    return any(p.role == "citizen" and p.space == "joint" for p in state.participants.values())


async def test_the_citizen_sees_the_colleagues_name_after_a_transfer(running):
    setup_desk(running, lawyers=("li", "wang"), on_shift=("li", "wang"))
    li = await Lawyer(running, "li").login()
    wang = await Lawyer(running, "wang").login()
    bots = []
    async with aiohttp.ClientSession() as http:
        try:
            secret = await queue_citizen(http, running, "张三", "13800138021")
            status, data = await li.post("pickup", {})
            assert status == 200, data
            first = data["current"]
            served = await ticket(http, running, secret)
            _, lbot = await bot_from_path(running, first["join_path"], (200, 0, 0), "L")
            bots.append(lbot)
            _, cbot = await bot_from_path(running, served["join_path"], (0, 200, 0), "C")
            bots.append(cbot)
            session = running.service.state(first["session"])
            lawyer = next(p for p in session.participants.values() if p.role == "duty_lawyer")
            await until(lambda: citizen_in_joint(running, first["session"]), 10)
            assert lawyer.name == "律师 li"
            status, _ = await li.post("transfer", {"ticket": first["id"], "to": "wang"})
            assert status == 200
            status, data = await wang.post("pickup", {"ticket": first["id"]})
            assert status == 200, data
            assert running.service.state(first["session"]).participants[lawyer.id].name == (
                "律师 wang"
            )

            citizen = next(p for p in session.participants.values() if p.role == "citizen")

            def seen_by_citizen() -> set[str]:
                view = running.service.state(first["session"]).view_for(citizen.id)
                return {p["name"] for p in view["participants"] if p["id"] == lawyer.id}

            await until(lambda: seen_by_citizen() == {"律师 wang"}, 10)
            reissued = [
                e
                for e in running.service.events(first["session"])
                if e.type == "participant.invitation_reissued"
            ]
            assert reissued[-1].actor == "staff:wang" and reissued[-1].data["name"] == "律师 wang"
        finally:
            for b in bots:
                await b.close()
            await li.close()
            await wang.close()
