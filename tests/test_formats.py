"""DOCX, PPTX, HTML, Markdown and PDF outlines: text, pages and heading paths; bad input of each new format."""

from __future__ import annotations

import io
import zipfile

import pytest
from fpdf import FPDF

from indexer.errors import LoaderError
from indexer.loaders import SUPPORTED_SUFFIXES, is_supported, load_bytes
from indexer.models import Document
from tests.office_files import corrupt_member, docx_bytes, encrypted, pptx_bytes, rezip

CONTRACT = [
    (0, "Supply Agreement No. 17", ["Between Northwind Ltd (the Supplier) and Contoso LLC (the Buyer)."]),
    (1, "1. Definitions", ["Goods means the pumps listed in Annex 1."]),
    (1, "2. Obligations", []),
    (2, "2.1 Delivery", ["The Supplier delivers the Goods to Kazan within 14 days of the order."]),
    (2, "2.3 Payment", ["The Buyer pays each invoice within 30 days by bank transfer."]),
    (1, "3. Договор и споры", ["Споры рассматриваются в Арбитражном суде города Москвы."]),
]


def section_of(doc: Document, phrase: str) -> tuple[str, ...]:
    at = doc.text.index(phrase)
    [section] = [s for s in doc.sections if s.start <= at < s.end]
    return section.headings


def test_new_formats_are_supported() -> None:
    assert {".docx", ".pptx", ".html", ".htm"} <= SUPPORTED_SUFFIXES
    assert is_supported("a/B.DOCX") and is_supported("deck.pptx") and not is_supported("old.doc")


def test_docx_text_tables_and_heading_paths() -> None:
    data = docx_bytes(CONTRACT, table=[["Item", "Price"], ["Pump P-100", "1 200 EUR"], ["", ""]])
    doc = load_bytes(data, "contracts/northwind.docx")
    assert doc.pages[0].number == 1 and len(doc.pages) == 1
    assert "Pump P-100 | 1 200 EUR" in doc.text  # a table row per line, cells joined
    assert section_of(doc, "within 30 days") == ("Supply Agreement No. 17", "2. Obligations", "2.3 Payment")
    assert section_of(doc, "Kazan") == ("Supply Agreement No. 17", "2. Obligations", "2.1 Delivery")
    assert section_of(doc, "Арбитражном") == ("Supply Agreement No. 17", "3. Договор и споры")
    assert section_of(doc, "Between Northwind") == ("Supply Agreement No. 17",)
    # Sections partition the text, in order.
    assert doc.sections[0].start == 0 and doc.sections[-1].end == len(doc.text)
    assert all(a.end == b.start for a, b in zip(doc.sections, doc.sections[1:], strict=False))


def test_docx_heading_by_custom_style_and_outline_level() -> None:
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = docx.Document()
    custom = document.styles.add_style("Заголовок раздела", WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = document.styles["Heading 1"]  # a heading by inheritance
    document.add_paragraph("Раздел 1. Предмет договора", style=custom)
    document.add_paragraph("Поставщик передаёт товар.")
    p = document.add_paragraph("1.1 Sub-clause by outline level")
    outline = OxmlElement("w:outlineLvl")
    outline.set(qn("w:val"), "1")  # level 2
    p._p.get_or_add_pPr().append(outline)
    document.add_paragraph("Body of the sub-clause.")
    out = io.BytesIO()
    document.save(out)
    doc = load_bytes(out.getvalue(), "custom.docx")
    path = ("Раздел 1. Предмет договора", "1.1 Sub-clause by outline level")
    assert section_of(doc, "Body of the sub-clause") == path
    assert section_of(doc, "Поставщик") == ("Раздел 1. Предмет договора",)


def test_pptx_slides_are_pages_with_their_titles() -> None:
    data = pptx_bytes(
        [
            ("Q3 results", "Revenue grew 12 percent", "Mention the Kazan plant"),
            (None, "A slide without a title: logistics costs", None),
            ("Outlook", "Two new plants in 2027", None),
        ]
    )
    doc = load_bytes(data, "deck.pptx")
    assert [p.number for p in doc.pages] == [1, 2, 3]
    at = doc.text.index("logistics costs")
    assert doc.pages_between(at, at + 5) == (2,)
    assert section_of(doc, "Revenue grew") == ("Q3 results",)
    assert section_of(doc, "Notes: Mention the Kazan plant") == ("Q3 results",)  # speaker notes are text
    assert section_of(doc, "logistics costs") == ()  # not under the previous slide's title
    assert section_of(doc, "Two new plants") == ("Outlook",)


HTML = """<!doctype html><html><head><title>Ignored</title><meta charset="windows-1251">
<style>p { color: red }</style><script>var secret = "script text";</script></head>
<body><nav>Home | Products | Contacts</nav>
<h1>Политика командировок</h1><p>Применяется ко всем <b>сотрудникам</b>.<br>Вторая строка.</p>
<h2>1. Суточные</h2><p>Суточные составляют 700 рублей.</p>
<table><tr><th>Город</th><th>Гостиница</th></tr><tr><td>Москва</td><td>до 6000 ₽</td></tr></table>
<h3>1.1 Исключения</h3><ul><li>Первое</li><li>Второе</li></ul>
<div hidden>hidden text</div><!-- a comment --><noscript>enable JS</noscript>
<h2>2. Отчёт</h2><p>Отчёт сдаётся за 3 дня.</p></body></html>"""


def test_html_visible_text_headings_and_tables() -> None:
    data = HTML.replace("₽", "руб.").encode("cp1251")
    doc = load_bytes(data, "kb/travel.html")
    for absent in ("Ignored", "script text", "color: red", "Home | Products", "hidden text", "a comment", "enable JS"):
        assert absent not in doc.text
    assert "Применяется ко всем сотрудникам.\nВторая строка." in doc.text
    assert "Москва | до 6000 руб." in doc.text
    assert section_of(doc, "700 рублей") == ("Политика командировок", "1. Суточные")
    assert section_of(doc, "Второе") == ("Политика командировок", "1. Суточные", "1.1 Исключения")
    assert section_of(doc, "3 дня") == ("Политика командировок", "2. Отчёт")


def test_markdown_headings_atx_setext_and_code() -> None:
    text = (
        "Intro before any heading.\n\n# Guide\n\nText.\n\nInstall\n-------\n\n```bash\n# not a heading\n```\n\n"
        "## **Step 2**: [run](http://x) it ##\n\nRun it.\n\n- item\n---\n"
    )
    doc = load_bytes(text.encode(), "guide.md")
    assert doc.text == text  # Markdown is indexed as written
    assert section_of(doc, "Intro") == ()
    assert section_of(doc, "# not a heading") == ("Guide", "Install")
    assert section_of(doc, "Run it") == ("Guide", "Step 2: run it")  # setext "---" is level 2, as "##"
    assert {h for s in doc.sections for h in s.headings} == {"Guide", "Install", "Step 2: run it"}  # not "- item"
    assert load_bytes(b"no headings here", "plain.md").sections == ()
    assert load_bytes(b"# Not Markdown\n\ntext", "notes.txt").sections == ()  # .txt has no headings


def test_pdf_outline_gives_headings() -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for title, level, body in [
        ("1. Scope", 0, "This policy covers laptops."),
        ("2. Rules", 0, "General rules follow."),
        ("2.1 Passwords", 1, "Passwords have 14 characters."),
    ]:
        pdf.add_page()
        pdf.start_section(title, level=level)
        pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 8, body)
    doc = load_bytes(bytes(pdf.output()), "policy.pdf")
    assert section_of(doc, "14 characters") == ("2. Rules", "2.1 Passwords")
    assert section_of(doc, "laptops") == ("1. Scope",)
    plain = FPDF()
    plain.add_page()
    plain.set_font("Helvetica", size=12)
    plain.multi_cell(0, 8, "No outline.")
    assert load_bytes(bytes(plain.output()), "plain.pdf").sections == ()


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def good_docx() -> bytes:
    return docx_bytes(CONTRACT)


def reason(data: bytes, name: str, **kwargs) -> str:
    with pytest.raises(LoaderError) as e:
        load_bytes(data, name, **kwargs)
    return str(e.value)


def test_truncated_and_damaged_office_files(good_docx: bytes) -> None:
    assert "damaged or truncated" in reason(good_docx[: len(good_docx) // 2], "half.docx")
    assert "damaged or truncated" in reason(good_docx[:-200], "tail-cut.docx")
    broken = corrupt_member(good_docx, "word/document.xml")
    assert "cannot read the Word document, the file is damaged" in reason(broken, "crc.docx")
    assert "not a Word document" in reason(rezip(good_docx, drop=["[Content_Types].xml"]), "x.docx")


def test_password_protected_office_files(good_docx: bytes) -> None:
    msg = reason(encrypted(good_docx, "s3cret"), "locked.docx")
    assert "encrypted with a password" in msg and "Word document" in msg
    deck = encrypted(pptx_bytes([("Title", "Body", None)]), "s3cret")
    assert "encrypted with a password" in reason(deck, "locked.pptx")


def test_a_docx_that_is_something_else(good_docx: bytes) -> None:
    pdf = FPDF()
    pdf.add_page()
    assert reason(bytes(pdf.output()), "report.docx").endswith("this is a PDF, not a Word document (rename it to .pdf)")
    assert "this is plain text, not a Word document (rename it to .txt)" in reason("Просто текст".encode(), "a.docx")
    assert "this is HTML or XML text" in reason(b"<html><body>x</body></html>", "page.docx")
    deck = pptx_bytes([("Title", "Body", None)])
    assert "this is a PowerPoint presentation, not a Word document (rename it to .pptx)" in reason(deck, "deck.docx")
    assert "this is a Word document, not a PowerPoint presentation" in reason(good_docx, "contract.pptx")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "just a zip")
    assert "a zip archive, but not a Word document" in reason(archive.getvalue(), "a.docx")
    assert "legacy Office file (OLE2" in reason(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old.docx")


def test_zip_bomb_and_unpacked_size_limit(good_docx: bytes) -> None:
    bomb = rezip(good_docx, extra={"word/media/zeros.bin": bytes(64 * 1024 * 1024)})
    assert len(bomb) < 1_000_000
    assert "looks like a zip bomb" in reason(bomb, "bomb.docx")
    msg = reason(good_docx, "contract.docx", max_unpacked_bytes=10_000)
    assert "over the limit of 10000 (ingest.max_unpacked_bytes)" in msg


def test_html_with_only_scripts_has_no_text() -> None:
    page = b"<html><head><script>document.write('hi')</script><style>b{}</style></head><body><script>x()</script>"
    assert "no text (the page has only scripts, styles or markup)" in reason(page + b"</body></html>", "app.html")
    assert "empty" in reason(b"  \n", "blank.htm")
    assert "no text on any slide" in reason(pptx_bytes([(None, "", None)]), "empty.pptx")


def test_one_huge_table_is_read(good_docx: bytes) -> None:
    rows = [[f"Item {i}", f"Warehouse {i % 7}", f"{i * 3} pcs"] for i in range(2000)]
    doc = load_bytes(docx_bytes([], table=rows), "stock.docx")
    assert doc.text.count("\n") == 1999 and "Item 1999 | Warehouse 4 | 5997 pcs" in doc.text
    assert doc.sections == ()


# ------------------------------------------------------------------------------------------ a whole run


def test_a_run_reports_each_bad_file_and_ingests_the_rest(tmp_path, tiny_model_dir) -> None:
    import json
    import random

    from indexer import cli as indexer_cli
    from indexer.records import kind_filter
    from indexer.store.edge import EdgeStore

    root = tmp_path / "in"
    root.mkdir()
    contract = docx_bytes(CONTRACT)
    files = {
        "contract.docx": contract,
        "deck.pptx": pptx_bytes([("Q3 results", "Revenue grew 12 percent", None)]),
        "kb.html": HTML.encode("cp1251", "replace"),
        "stock.docx": docx_bytes([], table=[[f"Item {i}", f"{i * 3} pcs", "Warehouse " * 5] for i in range(600)]),
        "truncated.docx": contract[: len(contract) // 2],
        "locked.pptx": encrypted(pptx_bytes([("Secret", "Body", None)]), "pw"),
        "renamed-pdf.docx": b"%PDF-1.7\n%...",
        "scripts.html": b"<html><script>app()</script></html>",
        "bomb.docx": rezip(contract, extra={"word/media/zeros.bin": bytes(8 * 1024 * 1024)}),
        "big.docx": rezip(contract, extra={"word/media/photo.bin": random.Random(0).randbytes(2 << 20)}),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n[chunking]\nchunk_size = 128\nchunk_overlap = 0\n'
        f'[qdrant]\npath = "{tmp_path / "store"}"\n[ingest]\nmax_unpacked_bytes = 1500000\n'
    )
    report_path = tmp_path / "report.json"
    code = indexer_cli.main(["ingest", str(root), "--config", str(cfg), "--no-progress", "--report", str(report_path)])
    assert code == 1
    got = {f["source"]: (f["status"], f["error"]) for f in json.loads(report_path.read_text())["files"]}
    expected = {
        "truncated.docx": "damaged or truncated",
        "locked.pptx": "encrypted with a password",
        "renamed-pdf.docx": "this is a PDF, not a Word document (rename it to .pdf)",
        "scripts.html": "no text (the page has only scripts, styles or markup)",
        "bomb.docx": "looks like a zip bomb",
        "big.docx": "over the limit of 1500000 (ingest.max_unpacked_bytes)",
    }
    for name, why in expected.items():
        assert got[name][0] == "failed" and why in got[name][1], (name, got[name])
    assert {n for n, (status, _) in got.items() if status == "ok"} == {
        "contract.docx",
        "deck.pptx",
        "kb.html",
        "stock.docx",
    }
    store = EdgeStore(tmp_path / "store", "documents")
    try:
        store.open_collection()
        chunks = [p.payload for p in store.scroll(kind_filter("chunk"))]
    finally:
        store.close()
    stock = [c for c in chunks if c["doc_id"] == "stock.docx"]
    assert len(stock) > 10 and max(c["token_count"] for c in stock) <= 128  # one huge table, chunked in budget
    [payment] = [c for c in chunks if "within 30 days" in c["text"]]
    assert payment["headings"] == ["Supply Agreement No. 17", "2. Obligations", "2.3 Payment"]
    assert {tuple(c["headings"]) for c in chunks if c["doc_id"] == "deck.pptx"} == {("Q3 results",)}
