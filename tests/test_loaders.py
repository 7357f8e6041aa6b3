import hashlib
from pathlib import Path

import pytest
from fpdf import FPDF

from indexer.errors import LoaderError
from indexer.loaders import build_document, decode_text, discover, glob_match, load_bytes, load_file
from indexer.models import SourceFile

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def make_pdf(path: Path, pages: list[str]) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def test_pdf_pages_are_tracked(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "r.pdf", ["Alpha page one text.", "Bravo page two text.", "Charlie page three."])
    doc = load_file(SourceFile(pdf, "r.pdf"))
    assert [p.number for p in doc.pages] == [1, 2, 3]
    for span, word in zip(doc.pages, ["Alpha", "Bravo", "Charlie"], strict=True):
        assert word in doc.text[span.start : span.end]
    bravo = doc.text.index("Bravo")
    assert doc.pages_between(bravo, bravo + 5) == (2,)
    assert doc.pages_between(0, len(doc.text)) == (1, 2, 3)
    assert doc.content_hash == hashlib.sha256(pdf.read_bytes()).hexdigest()


def test_russian_sample_pdf_extracts_cyrillic() -> None:
    doc = load_file(SourceFile(SAMPLES / "pdf" / "reglament-obrabotki-obrashchenij.pdf", "x.pdf"))
    page2 = doc.text[doc.pages[1].start : doc.pages[1].end]
    assert "30 календарных дней" in page2


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    with pytest.raises(LoaderError, match="no extractable text"):
        load_file(SourceFile(path, "scan.pdf"))


def test_corrupt_pdf(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="cannot read PDF"):
        load_bytes(b"%PDF-1.4\n this is not a pdf at all", "broken.pdf")


def test_text_with_bom_and_crlf() -> None:
    doc = load_bytes("\ufeffПривет\r\nмир".encode(), "a.txt")
    assert doc.metadata == {}
    assert doc.text == "Привет\nмир"
    assert doc.pages[0].number == 1
    assert doc.pages[0].end == len(doc.text)


def test_legacy_encodings_are_detected() -> None:
    text = "Договор поставки № 17. Поставщик обязуется передать товар в срок."
    assert decode_text(text.encode("cp1251"), "legacy.txt") == (text, "cp1251")
    assert decode_text(text.encode("utf-16"), "u16.txt") == (text, "utf-16")
    doc = load_bytes(text.encode("cp1251"), "legacy.txt")
    assert doc.text == text
    assert doc.metadata == {"encoding": "cp1251"}


def test_binary_is_a_clear_error() -> None:
    with pytest.raises(LoaderError, match="binary"):
        decode_text(b"abc\x00def\xff", "bin.txt")
    with pytest.raises(LoaderError, match="binary"):
        decode_text(bytes(range(256)) * 8, "bin.txt")


def test_empty_and_unsupported(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="empty"):
        load_bytes(b"  \n ", "empty.md")
    with pytest.raises(LoaderError, match="0 bytes"):
        load_bytes(b"", "zero.txt")
    with pytest.raises(LoaderError, match="unsupported"):
        load_bytes(b"data", "table.ods")


def test_discover_walks_recursively_with_globs(tmp_path: Path) -> None:
    for rel in ["a.txt", "sub/b.md", "sub/deep/c.pdf", "sub/skip.txt", "notes.docx"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = [s.rel_path for s in discover([tmp_path], ["**/*.txt", "**/*.md", "**/*.pdf"], ["sub/skip.txt"])]
    assert found == ["a.txt", "sub/b.md", "sub/deep/c.pdf"]
    assert [s.rel_path for s in discover([tmp_path / "sub" / "b.md"])] == ["b.md"]
    with pytest.raises(LoaderError, match="no such file"):
        list(discover([tmp_path / "missing"]))


def test_glob_match() -> None:
    assert glob_match("a.pdf", "**/*.pdf")
    assert glob_match("x/y/a.pdf", "**/*.pdf")
    assert glob_match("x/y/a.pdf", "*.pdf")  # * crosses folders
    assert not glob_match("a.pdf.bak", "**/*.pdf")


def test_document_identity_is_relative_path_and_hash(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("hello")
    [src] = discover([tmp_path])
    doc = load_file(src)
    assert doc.doc_id == "d/x.txt"
    assert doc.source == str(tmp_path / "d" / "x.txt")
    assert doc.content_hash == hashlib.sha256(b"hello").hexdigest()


def test_build_document_of_no_pages_has_one_empty_page() -> None:
    assert build_document("d", "d", b"", []).pages[0].number == 1


@pytest.mark.parametrize("encoding", ["cp1251", "koi8_r"])
@pytest.mark.parametrize("text", ["плохо", "Привет, мир", "Срок поставки: 30 дней.\nНеустойка 0,1 %."])
def test_short_russian_texts_in_legacy_encodings(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding), "ru.txt") == (text, encoding)


def test_western_text_is_not_taken_for_russian() -> None:
    text, encoding = decode_text("Grüße aus München, schöne Straße, Prix: 10 €".encode("cp1252"), "de.txt")
    assert encoding not in ("cp1251", "koi8_r")
    assert "München" in text, text
