"""The visible signature boxes and the printed case number, read back from real PDFs."""

import datetime as dt
import io
import subprocess

from pyhanko.pdf_utils.reader import PdfFileReader

from esign.appearance import box_lines
from tests.integration.esign.conftest import enrol, sample_agreement, sign_turn

CASE = "(2026)京0105民调88号"


def pdftotext(pdf: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True
    )
    return done.stdout.decode()


async def _signed(make_ceremony, language="zh-CN"):
    agreement = sample_agreement(language, case_number=CASE, timezone="Asia/Shanghai")
    ceremony = await make_ceremony(agreement)
    for pid in ("p-app", "p-res", "p-med"):
        await sign_turn(ceremony, pid, enrol(ceremony, pid))
    await ceremony.seal()
    return ceremony.pdf


async def test_case_number_is_printed_exactly(make_ceremony):
    text = pdftotext(await _signed(make_ceremony))
    assert f"案号：{CASE}" in text
    assert "2026010588" not in text


async def test_boxes_name_signer_role_identity_check_and_local_time(make_ceremony, clock):
    pdf = await _signed(make_ceremony)
    reader = PdfFileReader(io.BytesIO(pdf))
    applicant = box_lines(reader, "Applicant1")
    assert applicant[:2] == ["申请人：张三", "身份核验：专属邀请链接、调解员视频核验"]
    local = clock().astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert applicant[2].startswith(f"签署时间：{local:%Y-%m-%d}")
    assert applicant[2].endswith("(Asia/Shanghai, UTC+08:00)")
    assert box_lines(reader, "Respondent1")[1] == "身份核验：专属邀请链接、一次性验证码"
    assert box_lines(reader, "Mediator")[:2] == ["调解员：王五", "身份核验：工作人员账号登录"]
    assert box_lines(reader, "OrganisationSeal")[0] == "调解组织印章：城关区人民调解委员会"
    text = pdftotext(pdf)  # what a reader's tools see: no UTF-16 mojibake, no "Digitally signed"
    assert "Digitally" not in text and "þÿ" not in text
    assert "申请人：张三" in text and "Asia/Shanghai" in text


async def test_english_boxes(make_ceremony):
    reader = PdfFileReader(io.BytesIO(await _signed(make_ceremony, "en")))
    assert box_lines(reader, "Respondent1")[:2] == [
        "Respondent: 李四",
        "Identity checked by: personal invitation link, one-time code",
    ]
    assert box_lines(reader, "Mediator")[2].startswith("Signed: ")
