"""Notices to the family about their booking, in Chinese and English, through the ``Notifier``
interface of signaling/otp.py (e-mail today; an SMS gateway plugs in behind the same interface).

A notice says what happened, when and where the visit is, and what to bring; it names neither the
inmate's grade nor the officer. The booking's ``lang`` decides which language comes first; both
are always present, since the family and the operator may read different ones. The family
page's one-time code (signaling/visits_family.py) is worded here too.
"""

from __future__ import annotations

import logging

from visits.reservations import Booking

log = logging.getLogger("parley.visits")

TEMPLATES = {
    "requested": (
        "会见预约已提交（编号 {id}），等待监所审核。时间：{start}，地点：{bureau}。",
        "Visit request {id} was submitted and awaits the facility's approval. "
        "Time: {start}, place: {bureau}.",
    ),
    "approved": (
        "会见预约 {id} 已批准。请于 {start} 前15分钟携带身份证件到 {bureau}。",
        "Visit {id} is approved. Please come to {bureau} 15 minutes before {start} "
        "with your identity document.",
    ),
    "rejected": (
        "会见预约 {id} 未获批准（原因：{reason}）。如有疑问请咨询司法局窗口。",
        "Visit request {id} was not approved (reason: {reason}). Ask at the bureau's counter.",
    ),
    "cancelled": (
        "会见预约 {id}（{start}）已取消（原因：{reason}）。本次不计入会见次数。",
        "Visit {id} ({start}) was cancelled (reason: {reason}). It does not count "
        "against the monthly visits.",
    ),
    "rescheduled": (
        "会见已改期，新的预约编号 {id}，时间 {start}，地点 {bureau}，等待监所审核。",
        "The visit was moved: new request {id}, {start} at {bureau}, awaiting approval.",
    ),
}
SUBJECTS = {
    "requested": ("会见预约已提交", "Visit request submitted"),
    "approved": ("会见预约已批准", "Visit approved"),
    "rejected": ("会见预约未获批准", "Visit request not approved"),
    "cancelled": ("会见已取消", "Visit cancelled"),
    "rescheduled": ("会见已改期", "Visit moved"),
}
REASONS = {
    "security": ("安全原因", "security"),
    "discipline": ("纪律原因", "discipline"),
    "inmate_unavailable": ("服刑人员无法会见", "the person cannot attend"),
    "visitor_not_approved": ("会见人未获批准", "visitor not approved"),
    "capacity": ("时段已满", "no capacity"),
    "family_request": ("家属申请", "at the family's request"),
    "facility_lockdown": ("监所临时管控", "facility lockdown"),
    "terminal_fault": ("设备故障", "terminal fault"),
    "other": ("其他", "other"),
}


def compose(event: str, b: Booking, bureau: str) -> tuple[str, str]:
    """(subject, text) of a notice, the booking's language first."""
    zh_reason, en_reason = REASONS.get(b.reason_code, (b.reason_code, b.reason_code))
    start = b.start.strftime("%Y-%m-%d %H:%M")
    zh = TEMPLATES[event][0].format(id=b.id, start=start, bureau=bureau, reason=zh_reason)
    en = TEMPLATES[event][1].format(id=b.id, start=start, bureau=bureau, reason=en_reason)
    subject_zh, subject_en = SUBJECTS[event]
    first, second = (en, zh) if b.lang == "en" else (zh, en)
    return f"{subject_zh} {subject_en}", f"{first}\n\n{second}\n"


async def notify(notifier, event: str, b: Booking, bureau: str) -> bool:
    """Send the notice if there is a notifier and a contact; a failure is logged, never raised:
    the booking stands whether or not the e-mail went out."""
    if notifier is None or not b.contact:
        return False
    subject, text = compose(event, b, bureau)
    try:
        await notifier.send(b.contact, subject, text)
    except Exception:  # noqa: BLE001 - a mail server's trouble must not undo a booking
        log.warning("visit notice %s for booking %s not sent", event, b.id, exc_info=True)
        return False
    return True


def code_message(code: str) -> tuple[str, str]:
    """(subject, text) of the family page's one-time code, both languages."""
    return (
        "亲属服务验证码 Family services code",
        f"您的远程会见亲属服务验证码是 {code}，10分钟内有效。请勿告诉他人。\n"
        f"Your code for the family services of remote visitation is {code}. Valid for 10 minutes."
        " Tell nobody.\n",
    )
