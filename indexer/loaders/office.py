"""Word (.docx) and PowerPoint (.pptx) through python-docx and python-pptx, after the zip is checked.

An Office Open XML file is a zip archive. Before a library opens one, ``check_zip`` refuses what it
should not be handed: a password-protected file (an OLE2 compound file holding an "EncryptedPackage",
not a zip), another kind of file under the suffix, a damaged or truncated archive, and archives that
would unpack to more than ``ingest.max_unpacked_bytes`` or at a ratio only a zip bomb reaches.
Python's zipfile never inflates a member past its declared size, so the declared sizes bound the memory.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from indexer.errors import LoaderError
from indexer.loaders.structure import Block

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_ZIP_ENTRIES = 10_000
MAX_RATIO = 500  # declared : compressed size; deflate tops out near 1030:1, a 4000-row empty Word table is 170:1
RATIO_FLOOR = 1 << 20  # members unpacking to less than this are not checked for their ratio


@dataclass(frozen=True, slots=True)
class OfficeKind:
    label: str
    suffix: str
    marker: str  # part of the main content type in [Content_Types].xml


WORD = OfficeKind("Word document", ".docx", "wordprocessingml")
POWERPOINT = OfficeKind("PowerPoint presentation", ".pptx", "presentationml")
EXCEL = OfficeKind("Excel workbook", ".xlsx", "spreadsheetml")
KINDS = (WORD, POWERPOINT, EXCEL)


def _what_else(data: bytes) -> tuple[str, str]:
    """What non-zip bytes look like, and the suffix they would need."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF"):
        return "a PDF", ".pdf"
    if head.startswith(b"{\\rtf"):
        return "an RTF document", ".rtf (save it as .docx; RTF is not supported)"
    if head[:1] == b"<":
        return "HTML or XML text", ".html"
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < 65530:  # not just a character cut at the sample's end
            return "an unknown binary file", ""
    return "plain text", ".txt"


def check_zip(data: bytes, name: str, kind: OfficeKind, max_unpacked: int) -> None:
    """Raise a LoaderError saying why ``data`` cannot be opened as ``kind``; return if it can."""
    if data.startswith(OLE2_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise LoaderError(
                f"{name}: the {kind.label} is encrypted with a password; save a copy without the password "
                "and ingest that"
            )
        raise LoaderError(
            f"{name}: this is a legacy Office file (OLE2: .doc, .ppt or .xls), not a {kind.suffix}; "
            f"save it as {kind.suffix}"
        )
    if not data.startswith(b"PK"):
        what, suffix = _what_else(data)
        hint = f" (rename it to {suffix})" if suffix else ""
        raise LoaderError(f"{name}: this is {what}, not a {kind.label}{hint}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise LoaderError(f"{name}: the {kind.label} is damaged or truncated (not a complete zip archive: {e})") from e
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise LoaderError(f"{name}: the archive holds {len(infos)} files, over the limit of {MAX_ZIP_ENTRIES}")
        for info in infos:
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise LoaderError(
                    f"{name}: {info.filename} is compressed {ratio}:1 (the limit is {MAX_RATIO}:1); "
                    "this looks like a zip bomb"
                )
        total = sum(i.file_size for i in infos)
        if total > max_unpacked:
            raise LoaderError(
                f"{name}: it unpacks to {total} bytes, over the limit of {max_unpacked} (ingest.max_unpacked_bytes): "
                "a zip bomb, or a document too large to read safely"
            )
        try:
            types = archive.read("[Content_Types].xml").decode("utf-8", "replace")
        except KeyError:
            raise LoaderError(f"{name}: a zip archive, but not a {kind.label} (no [Content_Types].xml)") from None
        except Exception as e:
            raise LoaderError(f"{name}: the {kind.label} is damaged ({type(e).__name__}: {e})") from e
    if kind.marker not in types:
        other = next((k for k in KINDS if k.marker in types), None)
        if other is not None:
            raise LoaderError(f"{name}: this is a {other.label}, not a {kind.label} (rename it to {other.suffix})")
        raise LoaderError(f"{name}: a zip archive, but not a {kind.label}")


def _damaged(name: str, kind: OfficeKind, e: Exception) -> LoaderError:
    return LoaderError(f"{name}: cannot read the {kind.label}, the file is damaged ({type(e).__name__}: {e})")


# ------------------------------------------------------------------------------------------ Word

_HEADING_STYLE = re.compile(r"heading\s*(\d)$", re.IGNORECASE)


def _outline_level(ppr: Any) -> int | None:
    """``w:outlineLvl`` of paragraph properties, as a heading level (1..9); None for body text."""
    from docx.oxml.ns import qn

    if ppr is None:
        return None
    el = ppr.find(qn("w:outlineLvl"))
    if el is None:
        return None
    try:
        value = int(el.get(qn("w:val")))
    except (TypeError, ValueError):
        return None
    return value + 1 if 0 <= value < 9 else None


def _docx_level(paragraph: Any) -> int | None:
    """A paragraph's heading level: its own outline level, else its style's ("Title" 0, "Heading N" N)."""
    level = _outline_level(paragraph._p.pPr)
    if level is not None:
        return level
    style = paragraph.style
    for _ in range(16):  # the chain of base styles; a loop in a broken file must not hang
        if style is None:
            return None
        style_name = (style.name or "").strip().lower()
        if style_name == "title":
            return 0
        m = _HEADING_STYLE.match(style_name)
        if m:
            return int(m.group(1))
        level = _outline_level(style.element.pPr)
        if level is not None:
            return level
        style = style.base_style
    return None


def _flat(text: str) -> str:
    return " ".join(text.split())


def _table_lines(rows: Any, cell_text: Any) -> str:
    """One line per row, its cells joined by " | " (a merged cell once); empty rows left out."""
    lines = []
    for row in rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            element = getattr(cell, "_tc", None)
            if element is not None and element is previous:
                continue  # one cell spanning several grid columns
            previous = element
            cells.append(cell_text(cell))
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _docx_table(tbl: Any) -> str:
    """A Word table read from its XML (python-docx's cell objects cost a millisecond a row on large tables).

    Each ``w:tc`` once (a cell spanning columns is one cell; a vertically merged one is empty below its
    first row); a nested table's text is part of its cell.
    """
    from docx.oxml.ns import qn

    tr_tag, tc_tag, tbl_tag, p_tag = qn("w:tr"), qn("w:tc"), qn("w:tbl"), qn("w:p")
    text_tags = {qn("w:t"): None, qn("w:tab"): " ", qn("w:br"): " ", qn("w:cr"): " "}
    lines = []
    for tr in tbl.iter(tr_tag):
        owner = tr.getparent()
        while owner is not None and owner.tag != tbl_tag:
            owner = owner.getparent()
        if owner is not tbl:
            continue  # a row of a nested table
        cells = []
        for tc in tr.iter(tc_tag):
            if tc.getparent() is not tr and tc.getparent().getparent() is not tr:  # direct, or inside w:sdt
                continue
            paragraphs = (
                "".join((el.text or "") if text_tags[el.tag] is None else " " for el in par.iter(*text_tags))
                for par in tc.iter(p_tag)
            )
            cells.append(_flat(" ".join(paragraphs)))
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def docx_blocks(data: bytes, name: str) -> list[list[Block]]:
    """The body of a Word document in order (one page: Word files have no fixed pages): paragraphs,
    headings (by style or outline level) and tables (a row per line). Headers, footers, comments and
    footnotes are left out."""
    try:
        import docx
        from docx.table import Table

        document = docx.Document(io.BytesIO(data))
        blocks = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.append(Block(_docx_table(item._tbl)))
            else:
                blocks.append(Block(item.text, _docx_level(item)))
    except Exception as e:  # python-docx and lxml raise many types on damaged files
        raise _damaged(name, WORD, e) from e
    return [blocks]


# ------------------------------------------------------------------------------------------ PowerPoint


def _reading_order(shapes: Any) -> list[Any]:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape_blocks(shape: Any) -> list[Block]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return [b for s in _reading_order(shape.shapes) for b in _shape_blocks(s)]
    if getattr(shape, "has_table", False) and shape.has_table:
        return [Block(_table_lines(shape.table.rows, lambda c: _flat(c.text)))]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [Block(shape.text_frame.text.replace("\v", "\n"))]
    return []


def pptx_blocks(data: bytes, name: str) -> list[list[Block]]:
    """One page per slide: its title as a heading, then its text, tables and notes in reading order."""
    try:
        from pptx import Presentation

        presentation = Presentation(io.BytesIO(data))
        pages = []
        for slide in presentation.slides:
            title = slide.shapes.title
            blocks = []
            if title is not None and title.has_text_frame:
                blocks.append(Block(title.text_frame.text.replace("\v", " "), 1))
            for shape in _reading_order(slide.shapes):
                if title is None or shape.shape_id != title.shape_id:
                    blocks.extend(_shape_blocks(shape))
            notes = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
            if notes is not None and notes.text.strip():
                blocks.append(Block("Notes: " + notes.text.replace("\v", "\n")))
            pages.append(blocks)
    except Exception as e:  # python-pptx and lxml raise many types on damaged files
        raise _damaged(name, POWERPOINT, e) from e
    return pages
