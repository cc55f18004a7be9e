"""Agreement data shared by the esign tests."""

from esign.agreement import Agreement, Mediator, Party
from esign.protocol import IdentityAttestation


def sample_agreement(language: str = "zh-CN", version: int = 1, **changes) -> Agreement:
    zh = language == "zh-CN"
    fields = dict(
        case_no="MED-2026-000123",
        case_type="debt",
        session_id="sess-1",
        version=version,
        date="2026-11-25",
        language=language,
        organisation="城关区人民调解委员会" if zh else "Riverside Mediation Committee",
        parties=[
            Party(
                side="applicant", name="张三", participant_id="p-app", id_digest="PID-" + "ab" * 8
            ),
            Party(
                side="respondent", name="李四", participant_id="p-res", id_digest="PID-" + "cd" * 8
            ),
        ],
        mediator=Mediator(name="王五", participant_id="p-med", staff_id="MED-0042"),
        terms=[
            "被申请人于2026年12月31日前向申请人支付人民币伍万元整（¥50,000）。"
            if zh
            else "The respondent pays the applicant CNY 50,000 before 31 December 2026.",
            "双方就本纠纷再无其他争议。" if zh else "The parties have no further claims.",
        ],
    )
    fields.update(changes)
    return Agreement(**fields)


# What the session layer vouches for about each sample signer (see sample_agreement).
ATTESTATIONS = {
    "p-app": dict(
        role="party",
        name="张三",
        id_digest="PID-" + "ab" * 8,
        checks=["invitation_token", "mediator_video_check"],
    ),
    "p-res": dict(
        role="party",
        name="李四",
        id_digest="PID-" + "cd" * 8,
        checks=["invitation_token", "one_time_code"],
    ),
    "p-med": dict(role="mediator", name="王五", checks=["staff_login"]),
}


def attestation(participant_id: str, **changes) -> IdentityAttestation:
    fields = dict(
        session_id="sess-1", participant_id=participant_id, **ATTESTATIONS.get(participant_id, {})
    )
    fields.update(changes)
    return IdentityAttestation(**fields)
