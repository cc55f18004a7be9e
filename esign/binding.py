"""The visible document is the rendering of its signed data, and nothing else.

Every signature covers `agreement.json` and the pages, but nothing in PAdES says the pages
*say* what the data says: a faulty or dishonest renderer could print a term the data does not
hold, and every signature would still be valid. The renderer is deterministic, so anyone with
this code can render the embedded data again and compare it with what a viewer shows.

What is compared, on the revision a viewer displays (the last one): the number of pages, each
page's media box and decoded content stream (glyph ids, positions, /ActualText), each page
font's program, widths and ToUnicode map, and the annotations — only signature widgets, on the
boxes the renderer drew (or invisible). Compressed bytes and object numbers are not compared:
they are not what anyone sees. Whether the first revision is byte for byte the rendering is
reported as well (`first_revision_identical`).
"""

from __future__ import annotations

import dataclasses
import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

from esign.agreement import parse_agreement
from esign.document import attached_agreement_data, render_agreement_pdf
from esign.errors import EsignError


@dataclasses.dataclass(frozen=True)
class Binding:
    pages: int
    first_revision_identical: bool


def check_rendering(pdf: bytes) -> Binding:
    """Raise EsignError('rendering_differs') unless the displayed pages are exactly the
    rendering of the embedded agreement data."""
    reader = PdfFileReader(io.BytesIO(pdf))
    try:
        agreement = parse_agreement(attached_agreement_data(reader))
    except EsignError:
        raise
    except Exception as exc:  # absent (KeyError) or damaged
        raise EsignError("rendering_differs", "no readable agreement data embedded") from exc
    expected_pdf = render_agreement_pdf(agreement)
    expected = _pages(PdfFileReader(io.BytesIO(expected_pdf)))
    try:
        shown = _pages(reader)
    except EsignError:
        raise
    except Exception as exc:  # a damaged file fails here in many ways (zlib, syntax, keys)
        raise EsignError("rendering_differs", f"pages unreadable: {exc}") from exc
    if len(shown) != len(expected):
        raise EsignError(
            "rendering_differs", f"{len(shown)} page(s) shown, the data renders {len(expected)}"
        )
    for number, (have, want) in enumerate(zip(shown, expected, strict=True), start=1):
        for part in ("box", "content", "fonts"):
            if have[part] != want[part]:
                raise EsignError(
                    "rendering_differs", f"page {number}: {part} differs from the agreement data"
                )
        for field, rect in have["annots"]:
            if rect not in (want["rects"].get(field), None):
                raise EsignError(
                    "rendering_differs", f"page {number}: annotation {field!r} at {rect}"
                )
    return Binding(len(shown), pdf.startswith(expected_pdf))


def report_binding(pdf: bytes, report) -> None:
    """The `verify` check: one line in its report (esign.verify.Report)."""
    try:
        bound = check_rendering(pdf)
        detail = "first revision byte-identical" if bound.first_revision_identical else ""
        report.check(True, "pages are the rendering of the agreement data", detail)
    except EsignError as exc:
        report.check(False, "pages are the rendering of the agreement data", exc.message)


def _pages(reader: PdfFileReader) -> list[dict]:
    out = []
    for index in range(int(reader.root["/Pages"]["/Count"])):
        page = reader.find_page_for_modification(index)[0].get_object()
        contents = page["/Contents"]
        parts = contents if isinstance(contents, generic.ArrayObject) else [contents]
        annots, rects = [], {}
        for ref in page.get("/Annots", []):
            annots.append(_annotation(ref.get_object()))
        for field, rect in annots:
            rects[field] = rect
        out.append(
            {
                "box": [float(v) for v in page["/MediaBox"]],
                "content": b"\n".join(p.get_object().data for p in parts),
                "fonts": _fonts(page),
                "annots": annots,
                "rects": rects,
            }
        )
    return out


def _annotation(annot) -> tuple[str, tuple | None]:
    """(field name, rounded rect or None when invisible); anything but a signature widget is
    refused: an annotation can draw anywhere on the page."""
    field = annot if "/FT" in annot else annot.get("/Parent", generic.NullObject()).get_object()
    if annot.get("/Subtype") != "/Widget" or field.get("/FT") != "/Sig":
        raise EsignError("rendering_differs", f"a {annot.get('/Subtype')} annotation is shown")
    rect = tuple(round(float(v)) for v in annot["/Rect"])
    visible = rect[2] - rect[0] > 0 and rect[3] - rect[1] > 0
    return str(field.get("/T")), rect if visible else None


def _fonts(page) -> dict:
    fonts = {}
    for name, ref in page["/Resources"]["/Font"].items():
        font = ref.get_object()
        entry = {"base": str(font.get("/BaseFont")), "subtype": str(font.get("/Subtype"))}
        if "/ToUnicode" in font:
            entry["tounicode"] = font["/ToUnicode"].get_object().data
        for descendant in font.get("/DescendantFonts", []):
            d = descendant.get_object()
            entry["widths"] = repr(d.get("/W"))
            descriptor = d["/FontDescriptor"].get_object()
            for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                if key in descriptor:
                    entry["program"] = descriptor[key].get_object().data
        fonts[str(name)] = entry
    return fonts
