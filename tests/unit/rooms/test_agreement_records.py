"""The agreement in the ledger: drafts, and the records of esign steps the server made.

rooms does no cryptography; it decides who may record which step and when, so that a forged or
misplaced record never reaches the ledger."""

from __future__ import annotations

import pytest

from rooms.commands import SERVER_ONLY, decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec
from tests.unit.rooms.conftest import MEDIATION_PEOPLE


def run(service, state, actor, **raw):
    return service.execute(state.id, actor, decode_command(raw))


def rec(type_, **data):
    return {"type": type_, "data": data}


@pytest.fixture
def frozen(service, mediation):
    state, ids = mediation
    med, a, b = ids["Mediator Wang"], ids["Zhang San"], ids["Li Si"]
    run(
        service,
        state,
        med,
        type="draft_agreement",
        case_type="debt",
        language="zh-CN",
        terms=["李四于2026年12月31日前向张三支付人民币5000元。"],
    )
    run(
        service,
        state,
        med,
        type="freeze_agreement",
        signers=[a, b, med],
        events=[
            rec("agreement.frozen", version=1, fingerprint="f" * 64),
            rec("agreement.certified", version=1, pdf_sha256="1" * 64),
        ],
    )
    return state, ids, med, a, b


def test_draft_and_freeze_show_in_every_view(service, frozen):
    state, ids, med, a, b = frozen
    view = service.state(state.id).view_for(a)["agreement"]
    assert view["status"] == "signing" and view["version"] == 1 and view["next"] == a
    assert view["terms"] == ["李四于2026年12月31日前向张三支付人民币5000元。"]


def test_turns_complete_and_seal(service, frozen):
    state, ids, med, a, b = frozen
    for pid in (a, b, med):
        run(
            service,
            state,
            pid,
            type="sign_agreement",
            events=[rec("signature.embedded", participant_id=pid, pdf_sha256=pid[-1] * 64)],
        )
    agreement = service.state(state.id).agreement_view()
    assert agreement["status"] == "complete" and agreement["next"] is None
    run(
        service,
        state,
        med,
        type="seal_agreement",
        events=[rec("agreement.sealed", pdf_sha256="9" * 64)],
    )
    assert service.state(state.id).agreement["status"] == "sealed"
    with pytest.raises(CommandError) as exc:
        run(
            service,
            state,
            med,
            type="draft_agreement",
            case_type="debt",
            language="en",
            terms=["x"],
        )
    assert exc.value.code == "conflict"


@pytest.mark.parametrize(
    "who,events,code",
    [
        ("counsel", [rec("cert.issued", participant_id="COUNSEL")], "forbidden"),  # role
        ("a", [rec("signature.embedded", participant_id="B")], "forbidden"),  # for someone else
        ("a", [rec("agreement.sealed", participant_id="A")], "invalid"),  # wrong step
    ],
)
def test_forged_or_misplaced_records_are_refused(service, frozen, who, events, code):
    state, ids, med, a, b = frozen
    actor = {"counsel": ids["Counsel Zhao"], "a": a}[who]
    names = {"A": a, "B": b, "COUNSEL": ids["Counsel Zhao"]}
    for e in events:
        e["data"] = {k: names.get(v, v) for k, v in e["data"].items()}
    seq = service.state(state.id).seq
    with pytest.raises(CommandError) as exc:
        run(service, state, actor, type="sign_agreement", events=events)
    assert exc.value.code == code
    assert service.state(state.id).seq == seq


def test_seal_before_everyone_signed_and_freeze_without_draft(service, mediation, frozen):
    state, ids, med, a, b = frozen
    with pytest.raises(CommandError) as exc:
        run(
            service,
            state,
            med,
            type="seal_agreement",
            events=[rec("agreement.sealed", pdf_sha256="9" * 64)],
        )
    assert exc.value.code == "conflict"
    other = service.create_session(
        "mediation",
        actor="staff:wang",
        title="t",
        case_number=None,
        participants=list(MEDIATION_PEOPLE),
    )
    m2 = next(p.id for p in other.participants.values() if p.role == "mediator")
    with pytest.raises(CommandError) as exc:
        run(
            service,
            other,
            m2,
            type="freeze_agreement",
            signers=[m2],
            events=[rec("agreement.frozen", version=1, fingerprint="f" * 64)],
        )
    assert exc.value.code == "conflict"


def test_a_second_freeze_must_supersede(service, frozen):
    state, ids, med, a, b = frozen
    run(
        service,
        state,
        a,
        type="sign_agreement",
        events=[rec("signature.embedded", participant_id=a, pdf_sha256="2" * 64)],
    )
    run(
        service,
        state,
        med,
        type="draft_agreement",
        case_type="debt",
        language="zh-CN",
        terms=["改为4000元。"],
    )
    assert service.state(state.id).agreement_view()["edited_after_freeze"]
    with pytest.raises(CommandError):
        run(
            service,
            state,
            med,
            type="freeze_agreement",
            signers=[a, b, med],
            events=[rec("agreement.frozen", version=2, fingerprint="e" * 64)],
        )
    run(
        service,
        state,
        med,
        type="freeze_agreement",
        signers=[a, b, med],
        events=[
            rec("agreement.superseded", old_version=1, new_version=2, discarded_signatures=[a]),
            rec("agreement.frozen", version=2, fingerprint="e" * 64),
            rec("agreement.certified", version=2, pdf_sha256="3" * 64),
        ],
    )
    agreement = service.state(state.id).agreement_view()
    assert agreement["version"] == 2 and agreement["signed"] == [] and agreement["next"] == a


def test_records_are_server_only():
    assert {"freeze_agreement", "sign_agreement", "seal_agreement", "share_document"} <= SERVER_ONLY
    assert "draft_agreement" not in SERVER_ONLY


def test_signers_and_sides_are_decided_by_rooms(service, mediation):
    state, ids = mediation
    parties, mediator = state.agreement_signers()
    assert [(p.id, side) for p, side in parties] == [
        (ids["Zhang San"], "applicant"),
        (ids["Li Si"], "respondent"),
    ]
    assert mediator.id == ids["Mediator Wang"]
    assert state.is_host(ids["Mediator Wang"]) and not state.is_host(ids["Zhang San"])
    assert not state.is_host("p-00000000")
    run(service, state, ids["Li Si"], type="leave")
    assert [p.id for p, _ in state.agreement_signers()[0]] == [ids["Zhang San"]]


@pytest.mark.parametrize("side", [None, "C", "applicant"])
def test_a_party_without_side_a_or_b_is_refused(service, side):
    people = [*MEDIATION_PEOPLE, ParticipantSpec("Wu Liu", "party", side)]
    state = service.create_session(
        "mediation", actor="staff:wang", title="T", case_number="C-2", participants=people
    )
    with pytest.raises(CommandError) as refused:
        state.agreement_signers()
    assert refused.value.code == "invalid" and "Wu Liu" in refused.value.message


def test_promotion_runs_after_the_append_and_a_failed_one_keeps_the_events(service, mediation):
    """``execute(promote=)``: the promotion sees the events in the ledger, and if it fails the
    ledger's decision stands (folded into the state) and the error reaches the caller."""
    state, ids = mediation
    med = ids["Mediator Wang"]
    draft = {"type": "draft_agreement", "case_type": "debt", "language": "en", "terms": ["x"]}
    seen = []
    service.execute(
        state.id,
        med,
        decode_command(draft),
        promote=lambda: seen.append(service.events(state.id)[-1].type),
    )
    assert seen == ["agreement.drafted"]

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        service.execute(state.id, med, decode_command({**draft, "terms": ["y"]}), promote=broken)
    assert service.state(state.id).agreement["terms"] == ["y"]
    assert service.events(state.id)[-1].data["terms"] == ["y"]
    with pytest.raises(CommandError):  # a refused command never reaches the promotion
        service.execute(state.id, ids["Li Si"], decode_command(draft), promote=broken)
