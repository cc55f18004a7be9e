"""The visible signature boxes: who signed, in which role, how their identity was checked and
when (local time), in the agreement's language and its embedded CJK font.

pyHanko's default box prints "Digitally signed" in a WinAnsi Courier font (UTF-16 text comes
out as mojibake) and UTC; a court reads these boxes, so they must say the same as the data.
The text is a pure function of the agreement, the field, the identity checks and the moment,
so the phone and `verify` can recompute and compare it (`box_lines` reads a box back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import TextStampStyle

from esign.agreement import Agreement, local_zone, signing_order
from esign.document import font_bytes
from esign.templates import template

BOX_FONT_SIZE = 8


def local_time(agreement: Agreement, moment: dt.datetime) -> str:
    """`2026-11-30 22:15:07 (Asia/Shanghai, UTC+08:00)`: local, with the zone spelt out."""
    zone = local_zone(agreement)
    local = moment.astimezone(zone)
    offset = local.utcoffset() or dt.timedelta(0)
    sign, minutes = (
        ("-" if offset < dt.timedelta(0) else "+"),
        abs(offset) // dt.timedelta(minutes=1),
    )
    return (
        f"{local:%Y-%m-%d %H:%M:%S} ({zone.key}, UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})"
    )


def signer_lines(
    agreement: Agreement, field: str, checks: list[str] | tuple[str, ...], moment: dt.datetime
) -> list[str]:
    """The lines of a signer's box (field `Applicant1`, `Respondent1`, …, `Mediator`)."""
    words = template(agreement.language)
    participant = dict((f, p) for p, f in signing_order(agreement))[field]
    names = {p.participant_id: p.name for p in agreement.parties}
    names[agreement.mediator.participant_id] = agreement.mediator.name
    role = "mediator" if field == "Mediator" else field.rstrip("0123456789").lower()
    how = words["box_separator"].join(words.get(f"check_{c}", c) for c in checks)
    return [
        words[f"box_{role}"].format(name=names[participant]),
        words["box_checks"].format(checks=how),
        words["box_time"].format(time=local_time(agreement, moment)),
    ]


def seal_lines(agreement: Agreement, moment: dt.datetime) -> list[str]:
    words = template(agreement.language)
    return [
        words["box_seal"].format(organisation=agreement.organisation),
        words["box_seal_time"].format(time=local_time(agreement, moment)),
    ]


@dataclasses.dataclass(frozen=True)
class _AgreementFont(FontEngineFactory):
    """The agreement's embedded Noto Sans CJK face, from memory (pyHanko wants a path)."""

    language: str

    def create_font_engine(self, writer, obj_stream=None) -> GlyphAccumulator:
        return GlyphAccumulator(
            writer,
            io.BytesIO(font_bytes()),
            BOX_FONT_SIZE,
            bcp47_lang_code=self.language,
            obj_stream=obj_stream,
        )


def stamp_style(agreement: Agreement, lines: list[str]) -> TextStampStyle:
    """A thin-bordered box with `lines`, left-aligned, shrunk to fit the field."""
    text = "\n".join(lines).replace("%", "%%")  # pyHanko interpolates %(…)s
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(
            font=_AgreementFont(agreement.language), font_size=BOX_FONT_SIZE, leading=11
        ),
        border_width=1,
    )


def box_lines(pdf_reader, field: str) -> list[str]:
    """The text lines drawn in a signature field's box (its /ActualText spans), or []."""
    for ref in pdf_reader.root["/AcroForm"]["/Fields"]:
        widget = ref.get_object()
        if widget.get("/T") != field:
            continue
        try:
            stream = widget["/AP"]["/N"].get_object()
        except KeyError:
            return []
        return _actual_texts(_stream_with_forms(stream))
    return []


def _stream_with_forms(stream) -> bytes:
    """A form's content followed by the content of the forms it draws (one level deep is
    not enough for pyHanko's stamps: the text sits in a nested form XObject)."""
    data = stream.data
    try:
        xobjects = stream["/Resources"]["/XObject"]
    except KeyError:
        return data
    for name in xobjects:
        inner = xobjects[name].get_object()
        if isinstance(inner, generic.StreamObject):
            data += b"\n" + _stream_with_forms(inner)
    return data


def _actual_texts(data: bytes) -> list[str]:
    lines, pos = [], 0
    while (pos := data.find(b"/ActualText ", pos)) != -1:
        pos += len(b"/ActualText ")
        lines.append(str(generic.read_object(io.BytesIO(data[pos:]), None)))
    return lines
