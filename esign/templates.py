"""Fixed wording of the agreement PDF in each supported language (中文, English)."""

from __future__ import annotations

TEMPLATES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "调解协议书",
        "case_no": "案号：{case_no}",
        "version": "版本：第 {version} 版",
        "date": "日期：{date}",
        "organisation": "调解组织：{organisation}",
        "applicant": "申请人：{name}",
        "respondent": "被申请人：{name}",
        "mediator": "调解员：{name}",
        "preamble": "经调解员主持调解，各方当事人在自愿、合法的基础上达成如下协议：",
        "closing": "本协议经各方当事人签名、调解员签名并加盖调解组织印章后生效。"
        "各方可自本协议生效之日起三十日内共同向人民法院申请司法确认。",
        "signatures": "签署",
        "sig_applicant": "申请人签名",
        "sig_respondent": "被申请人签名",
        "sig_mediator": "调解员签名",
        "sig_seal": "调解组织印章",
        "footer": "协议指纹（SHA-256）：{fingerprint}",
        "page": "第 {page} 页 / 共 {pages} 页",
        "supersedes": "本版本取代第 {version} 版（指纹 {fingerprint}）",
        "box_applicant": "申请人：{name}",
        "box_respondent": "被申请人：{name}",
        "box_mediator": "调解员：{name}",
        "box_checks": "身份核验：{checks}",
        "box_time": "签署时间：{time}",
        "box_seal": "调解组织印章：{organisation}",
        "box_seal_time": "盖章时间：{time}",
        "box_separator": "、",
        "check_invitation_token": "专属邀请链接",
        "check_staff_login": "工作人员账号登录",
        "check_mediator_video_check": "调解员视频核验",
        "check_one_time_code": "一次性验证码",
        "check_real_name_check": "实名认证",
    },
    "en": {
        "title": "Mediation Agreement",
        "case_no": "Case number: {case_no}",
        "version": "Version: {version}",
        "date": "Date: {date}",
        "organisation": "Mediation organisation: {organisation}",
        "applicant": "Applicant: {name}",
        "respondent": "Respondent: {name}",
        "mediator": "Mediator: {name}",
        "preamble": "Under the guidance of the mediator, the parties have freely and lawfully "
        "agreed as follows:",
        "closing": "This agreement takes effect when signed by every party and by the mediator "
        "and sealed by the mediation organisation. The parties may jointly apply to a court for "
        "judicial confirmation within thirty days of that date.",
        "signatures": "Signatures",
        "sig_applicant": "Applicant",
        "sig_respondent": "Respondent",
        "sig_mediator": "Mediator",
        "sig_seal": "Organisation seal",
        "footer": "Agreement fingerprint (SHA-256): {fingerprint}",
        "page": "Page {page} of {pages}",
        "supersedes": "This version replaces version {version} (fingerprint {fingerprint})",
        "box_applicant": "Applicant: {name}",
        "box_respondent": "Respondent: {name}",
        "box_mediator": "Mediator: {name}",
        "box_checks": "Identity checked by: {checks}",
        "box_time": "Signed: {time}",
        "box_seal": "Seal of {organisation}",
        "box_seal_time": "Sealed: {time}",
        "box_separator": ", ",
        "check_invitation_token": "personal invitation link",
        "check_staff_login": "staff account login",
        "check_mediator_video_check": "mediator's video check",
        "check_one_time_code": "one-time code",
        "check_real_name_check": "real-name check",
    },
}


def template(language: str) -> dict[str, str]:
    """The wording for a language code of the agreement ('zh-CN' or 'en')."""
    return TEMPLATES[language]
