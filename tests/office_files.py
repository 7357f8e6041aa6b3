"""Real Office files built in the test: python-docx and python-pptx write them, zipfile damages them."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

Section = tuple[int, str, Sequence[str]]  # (heading level, heading, paragraphs); level 0 is the title


def docx_bytes(sections: Sequence[Section], table: Sequence[Sequence[str]] | None = None) -> bytes:
    """A Word document: each section's heading in the built-in style of its level, then its paragraphs."""
    import docx

    document = docx.Document()
    for level, heading, paragraphs in sections:
        if heading:
            document.add_heading(heading, level)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(slides: Sequence[tuple[str | None, str, str | None]]) -> bytes:
    """A presentation: per slide (title or None, body text, speaker notes or None)."""
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    for title, body, notes in slides:
        if title is None:
            slide = presentation.slides.add_slide(presentation.slide_layouts[6])  # blank: no title placeholder
            box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(3))
            box.text_frame.text = body
        else:
            slide = presentation.slides.add_slide(presentation.slide_layouts[1])  # title and content
            slide.shapes.title.text = title
            slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def rezip(data: bytes, extra: dict[str, bytes] | None = None, drop: Sequence[str] = ()) -> bytes:
    """The same archive with members left out or added (deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in drop:
                dst.writestr(info, src.read(info.filename))
        for name, content in (extra or {}).items():
            dst.writestr(name, content)
    return out.getvalue()


def corrupt_member(data: bytes, member: str) -> bytes:
    """Flip bytes inside one member's compressed data (the archive's directory stays intact)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    at = info.header_offset  # the local header: 30 bytes, then the name and an extra field of its own lengths
    start = (
        at + 30 + int.from_bytes(data[at + 26 : at + 28], "little") + int.from_bytes(data[at + 28 : at + 30], "little")
    )
    middle = start + info.compress_size // 2
    damaged = bytearray(data)
    for i in range(middle, middle + 16):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def encrypted(data: bytes, password: str) -> bytes:
    """An Office file protected with a password, as Office writes it (ECMA-376 agile encryption)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt(password, out)
    return out.getvalue()
