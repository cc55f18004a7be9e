"""Render an agreement as a deterministic PDF: same agreement data, same bytes.

Written with pyHanko's writer and its HarfBuzz/fontTools glyph engine, with Noto Sans CJK SC
(SIL Open Font License) embedded as a subset, so Chinese and English render alike. The PDF
carries the canonical agreement data as the attachment `agreement.json`, the fingerprint on
every page, and one empty signature field per signer plus the organisation seal.

pyHanko stamps a random document ID, a random font-subset tag and the current time into new
files; `_DeterministicWriter` derives all three from the agreement instead.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import re
import threading
from datetime import UTC, datetime

import msgspec
from fontTools.ttLib import TTCollection
from pyhanko.pdf_utils import embed, generic
from pyhanko.pdf_utils.font.api import FontSubsetCollection
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, append_signature_field

from esign.agreement import Agreement, canonical_json, fingerprint, signing_order
from esign.templates import template

FONT_COLLECTION = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
FONT_FACE = "NotoSansCJKsc-Regular"
ATTACHMENT_NAME = "agreement.json"
SEAL_FIELD = "OrganisationSeal"
CERTIFICATION_FIELD = "PlatformCertification"

PAGE_W, PAGE_H = 595.0, 842.0  # A4 in points
MARGIN = 56.0
BODY_SIZE = 11
LEADING = 17.0
FOOTER_Y = 30.0
BOX_W, BOX_H, ROW_H = 230.0, 56.0, 84.0


# pyHanko drops the OpenType layout tables from the embedded subset anyway; removing them
# up front makes every render ~3x faster at the cost of kerning (CJK text does not use it).
_UNUSED_TABLES = ("GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx")


@functools.cache
def font_bytes() -> bytes:
    """The Simplified Chinese face of the installed Noto Sans CJK collection, as OTF bytes."""
    collection = TTCollection(FONT_COLLECTION, lazy=True)
    for face in collection.fonts:
        if face["name"].getDebugName(6) == FONT_FACE:
            for table in _UNUSED_TABLES:
                if table in face:
                    del face[table]
            out = io.BytesIO()
            face.save(out)
            return out.getvalue()
    raise FileNotFoundError(f"{FONT_FACE} not found in {FONT_COLLECTION}")


@dataclasses.dataclass(frozen=True)
class _SeededSubsets(FontSubsetCollection):
    seed: bytes = b""

    def add_subset(self) -> str:
        digest = hashlib.sha256(self.seed + len(self.subsets).to_bytes(4, "big")).digest()
        return "".join(chr(ord("A") + b % 26) for b in digest[:6])


class _DeterministicWriter(PdfFileWriter):
    def __init__(self, seed: bytes, fixed_date: datetime) -> None:
        super().__init__(stream_xrefs=False)
        self._document_id = generic.ArrayObject(
            [generic.ByteStringObject(seed[:16]), generic.ByteStringObject(seed[16:32])]
        )
        self._seed = seed
        self._fixed_date = fixed_date

    def get_subset_collection(self, base_postscript_name: str):
        if base_postscript_name not in self._font_resources:
            self._font_resources[base_postscript_name] = _SeededSubsets(
                base_postscript_name, seed=self._seed
            )
        return self._font_resources[base_postscript_name]

    def _update_meta(self) -> None:
        super()._update_meta()
        info = self._info.get_object()
        info["/CreationDate"] = info["/ModDate"] = generic.pdf_date(self._fixed_date)


_TOKEN = re.compile(
    r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]|[^\s\u2e80-\u9fff]+|\s+"
)


class _Typesetter:
    """Measures and wraps text with one embedded font; produces PDF text operators."""

    def __init__(self, writer: PdfFileWriter, language: str) -> None:
        self.engine = GlyphAccumulator(
            writer, io.BytesIO(font_bytes()), BODY_SIZE, bcp47_lang_code=language
        )
        self._widths: dict[str, float] = {}

    def width(self, text: str, size: float) -> float:
        if text not in self._widths:
            self._widths[text] = self.engine.shape(text, with_actual_text=False).x_advance
        return self._widths[text] * size

    def _tokens(self, text: str, size: float, max_width: float) -> list[str]:
        """Words / CJK characters; a word wider than a line is cut into characters."""
        out: list[str] = []
        for token in _TOKEN.findall(text):
            if token.isspace() or self.width(token, size) <= max_width:
                out.append(token)
            else:
                out.extend(token)
        return out

    def wrap(self, text: str, size: float, max_width: float) -> list[str]:
        lines: list[str] = []
        current = ""
        for token in self._tokens(text, size, max_width):
            candidate = current + token
            if current and self.width(candidate.rstrip(), size) > max_width:
                lines.append(current.rstrip())
                current = "" if token.isspace() else token
            else:
                current = candidate
        if current.strip() or not lines:
            lines.append(current.rstrip())
        return lines

    def line(self, text: str, x: float, y: float, size: float) -> bytes:
        self.engine.font_size = size
        ops = self.engine.shape(text).graphics_ops
        return b"BT /F1 %g Tf %g %g Td %s ET\n" % (size, x, y, ops)


def _fields_layout(agreement: Agreement) -> list[tuple[str, str]]:
    """(field name, label key) for every visible signature box, in turn order."""
    labels = []
    for _participant, field in signing_order(agreement):
        key = "sig_mediator" if field == "Mediator" else f"sig_{field.rstrip('0123456789').lower()}"
        labels.append((field, key))
    labels.append((SEAL_FIELD, "sig_seal"))
    return labels


_RENDERED: dict[bytes, bytes] = {}  # data digest -> PDF; the few agreements in use lately
_RENDERED_KEEP = 8
_RENDERED_LOCK = threading.Lock()  # renderings also run in worker threads


def render_agreement_pdf(agreement: Agreement) -> bytes:
    """The agreement as PDF bytes; a pure function of the agreement data.

    Pure, so the last few renderings are kept, keyed by a digest of the data itself (not by
    the fingerprint the rendering prints): verifying one agreement renders it again for every
    signed revision, and rendering (font parsing and subsetting) is most of a verification's
    time."""
    key = hashlib.sha256(msgspec.json.encode(agreement)).digest()
    with _RENDERED_LOCK:
        pdf = _RENDERED.pop(key, None)
    if pdf is None:
        pdf = _render(agreement, fingerprint(agreement))
    with _RENDERED_LOCK:
        _RENDERED[key] = pdf  # most recent last
        while len(_RENDERED) > _RENDERED_KEEP:
            del _RENDERED[next(iter(_RENDERED))]
    return pdf


def _render(agreement: Agreement, fp: str) -> bytes:
    words = template(agreement.language)
    fixed_date = datetime.fromisoformat(agreement.date).replace(tzinfo=UTC)
    writer = _DeterministicWriter(bytes.fromhex(fp), fixed_date)
    writer.document_meta.title = (
        f"{words['title']} {printed_case_number(agreement)} v{agreement.version}"
    )
    ts = _Typesetter(writer, agreement.language)
    width = PAGE_W - 2 * MARGIN

    pages: list[list[bytes]] = [[]]
    y = PAGE_H - MARGIN

    def emit(text: str, size: float = BODY_SIZE, indent: float = 0.0, gap: float = 0.0) -> None:
        nonlocal y
        for part in ts.wrap(text, size, width - indent):
            if y - LEADING < MARGIN + 20:
                pages.append([])
                y = PAGE_H - MARGIN
            y -= LEADING * size / BODY_SIZE
            pages[-1].append(ts.line(part, MARGIN + indent, y, size))
        y -= gap

    emit(words["title"], size=20, gap=10)
    emit(words["case_no"].format(case_no=printed_case_number(agreement)))
    emit(words["version"].format(version=agreement.version))
    emit(words["date"].format(date=agreement.date))
    emit(words["organisation"].format(organisation=agreement.organisation), gap=8)
    for party in agreement.parties:
        emit(words[party.side].format(name=party.name))
    emit(words["mediator"].format(name=agreement.mediator.name), gap=8)
    if agreement.supersedes is not None:
        emit(words["supersedes"].format(**msgspec.to_builtins(agreement.supersedes)), size=9, gap=6)
    emit(words["preamble"], gap=6)
    for n, term in enumerate(agreement.terms, start=1):
        for k, paragraph in enumerate(term.split("\n")):
            emit((f"{n}. " if k == 0 else "") + paragraph, indent=0 if k == 0 else 14)
        y -= 4
    emit(words["closing"], gap=10)

    boxes = _fields_layout(agreement)
    rows = (len(boxes) + 1) // 2
    if y - 24 - rows * ROW_H < MARGIN + 20:
        pages.append([])
        y = PAGE_H - MARGIN
    emit(words["signatures"], size=14, gap=4)
    field_specs = []
    for i, (field, key) in enumerate(boxes):
        col, row = i % 2, i // 2
        x = MARGIN + col * (BOX_W + 20)
        top = y - row * ROW_H
        pages[-1].append(ts.line(words[key], x, top - 14, 10))
        box = (x, top - 20 - BOX_H, x + BOX_W, top - 20)
        pages[-1].append(b"0.6 G 0.5 w %g %g %g %g re S 0 G\n" % (x, box[1], BOX_W, BOX_H))
        field_specs.append((field, len(pages) - 1, tuple(round(v) for v in box)))

    footer = words["footer"].format(fingerprint=fp)
    page_refs = []
    for number, ops in enumerate(pages, start=1):
        foot = ts.line(footer, MARGIN, FOOTER_Y + 10, 7)
        foot += ts.line(words["page"].format(page=number, pages=len(pages)), MARGIN, FOOTER_Y, 7)
        stream = generic.StreamObject(stream_data=b"".join(ops) + foot)
        stream.compress()
        resources = generic.DictionaryObject(
            {
                generic.pdf_name("/Font"): generic.DictionaryObject(
                    {generic.pdf_name("/F1"): ts.engine.as_resource()}
                )
            }
        )
        page = PageObject(writer.add_object(stream), (0, 0, PAGE_W, PAGE_H), resources)
        page_refs.append(writer.insert_page(page))

    for field, page_index, box in field_specs:
        append_signature_field(writer, SigFieldSpec(field, on_page=page_index, box=box))

    data = canonical_json(agreement)
    embedded = embed.EmbeddedFileObject.from_file_data(
        writer,
        data,
        mime_type="application/json",
        params=embed.EmbeddedFileParams(embed_checksum=True),
    )
    embed.embed_file(
        writer,
        embed.FileSpec(
            file_spec_string=ATTACHMENT_NAME,
            file_name=ATTACHMENT_NAME,
            embedded_data=embedded,
            description=f"Canonical agreement data (RFC 8785), SHA-256 {fp}",
        ),
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def printed_case_number(agreement: Agreement) -> str:
    """The case number as the office writes it (`case_number`), else the ASCII `case_no`."""
    return agreement.case_number if isinstance(agreement.case_number, str) else agreement.case_no


def signature_field_names(agreement: Agreement) -> list[str]:
    """Every empty signature field the rendered PDF holds, in turn order, seal last."""
    return [field for field, _ in _fields_layout(agreement)]


def attached_agreement_data(pdf_reader) -> bytes:
    """The bytes of `agreement.json` embedded in a PDF (raises KeyError if absent)."""
    names = pdf_reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    for i in range(0, len(names), 2):
        if str(names[i]) == ATTACHMENT_NAME:
            spec = names[i + 1].get_object()
            return spec["/EF"]["/F"].get_object().data
    raise KeyError(ATTACHMENT_NAME)


def page_texts(pdf_reader) -> list[list[str]]:
    """The text lines of each page, read back from the /ActualText spans we write."""
    pages = []
    for page_index in range(int(pdf_reader.root["/Pages"]["/Count"])):
        page, _ = pdf_reader.find_page_for_modification(page_index)
        contents = page.get_object()["/Contents"]
        parts = contents if isinstance(contents, generic.ArrayObject) else [contents]
        data = b"\n".join(part.get_object().data for part in parts)
        lines, pos = [], 0
        while (pos := data.find(b"/ActualText ", pos)) != -1:
            pos += len(b"/ActualText ")
            lines.append(str(generic.read_object(io.BytesIO(data[pos:]), None)))
        pages.append(lines)
    return pages


def render_text_pdf(lines: list[tuple[str, float]], language: str, title: str) -> bytes:
    """A plain A4 document of (text, font size) lines, wrapped, in the agreement's font."""
    writer = PdfFileWriter(stream_xrefs=False)
    writer.document_meta.title = title
    ts = _Typesetter(writer, language)
    width = PAGE_W - 2 * MARGIN
    pages: list[list[bytes]] = [[]]
    y = PAGE_H - MARGIN
    for text, size in lines:
        for part in ts.wrap(text, size, width) if text else [""]:
            if y - LEADING < MARGIN:
                pages.append([])
                y = PAGE_H - MARGIN
            y -= LEADING * size / BODY_SIZE
            if part:
                pages[-1].append(ts.line(part, MARGIN, y, size))
    resources = generic.DictionaryObject(
        {
            generic.pdf_name("/Font"): generic.DictionaryObject(
                {generic.pdf_name("/F1"): ts.engine.as_resource()}
            )
        }
    )
    for ops in pages:
        stream = generic.StreamObject(stream_data=b"".join(ops))
        stream.compress()
        writer.insert_page(PageObject(writer.add_object(stream), (0, 0, PAGE_W, PAGE_H), resources))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
