"""Every kind of bad input gets its reason in the report, and the other files are ingested."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fpdf import FPDF
from fpdf.enums import EncryptionMethod

from indexer import cli as indexer_cli
from indexer.records import kind_filter
from indexer.store.edge import EdgeStore

pytestmark = pytest.mark.slow  # a corpus with a multi-megabyte line, ingested by the real CLI

LEGACY = "Договор поставки № 17. Поставщик обязуется передать товар Покупателю в срок."


def pdf_file(path: Path, text: str | None, password: str | None = None, aes: bool = False) -> None:
    pdf = FPDF()
    if password:
        method = EncryptionMethod.AES_256 if aes else EncryptionMethod.RC4
        pdf.set_encryption(owner_password="owner", user_password=password, encryption_method=method)
    pdf.add_page()
    if text:
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    else:
        pdf.rect(20, 20, 80, 80)  # a drawing, no text layer: what a scan looks like to pypdf
    pdf.output(str(path))


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nA perfectly fine Markdown file about delivery terms.")
    pdf_file(root / "good.pdf", "A fine PDF about payment terms.")
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a PDF body")
    pdf_file(root / "encrypted.pdf", "Secret terms.", password="s3cret")
    pdf_file(root / "encrypted-aes.pdf", "Secret AES terms.", password="s3cret", aes=True)
    pdf_file(root / "scan.pdf", None)
    (root / "blank.txt").write_text("   \n\n  ")
    (root / "zero.txt").write_bytes(b"")
    (root / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    (root / "legacy-cp1251.txt").write_bytes(LEGACY.encode("cp1251"))
    (root / "one-line.txt").write_text(("word " * 20 + "длинная строка ") * 22_000)  # 2.7 MB, no newline
    (root / "huge.txt").write_bytes(b"x " * 2_000_000)  # 4 MB: over the limit set below
    (root / "locked.txt").write_text("cannot be read")
    (root / "dangling.md").symlink_to(root / "missing-target.md")
    (root / "loop-a.txt").symlink_to(root / "loop-b.txt")
    (root / "loop-b.txt").symlink_to(root / "loop-a.txt")
    (root / "notes.odt").write_bytes(b"PK\x03\x04 not supported")
    os.mkfifo(root / "pipe.txt")
    return root


@pytest.fixture
def config(tmp_path: Path, tiny_model_dir: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\nbatch_size = 16\n'
        "[chunking]\nchunk_size = 2048\nchunk_overlap = 0\n"
        f'[qdrant]\npath = "{tmp_path / "store"}"\n[collection]\nname = "bad"\n'
        "[ingest]\nmax_file_bytes = 3500000\n"
    )
    return cfg


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch):
    """Make locked.txt unreadable; as root (who reads anything) by failing the read itself."""

    def lock(root: Path) -> None:
        target = root / "locked.txt"
        if os.geteuid() != 0:
            target.chmod(0)
            return
        original = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == target:
                raise PermissionError(13, "Permission denied", str(self))
            return original(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)

    return lock


EXPECTED = {
    "good.md": ("ok", None),
    "good.pdf": ("ok", None),
    "legacy-cp1251.txt": ("ok", None),
    "one-line.txt": ("ok", None),
    "corrupt.pdf": ("failed", "cannot read PDF, the file is damaged"),
    "encrypted.pdf": ("failed", "encrypted with a password (set ingest.pdf_password)"),
    "encrypted-aes.pdf": ("failed", "encrypted with a password (set ingest.pdf_password)"),
    "scan.pdf": ("failed", "no extractable text"),
    "blank.txt": ("failed", "the file is empty (only whitespace)"),
    "zero.txt": ("failed", "the file is empty (0 bytes)"),
    "image.txt": ("failed", "looks like a binary file"),
    "huge.txt": ("failed", "over the size limit of 3500000"),
    "locked.txt": ("failed", "cannot read (Permission denied)"),
    "dangling.md": ("failed", "broken symbolic link"),
    "loop-a.txt": ("failed", "symbolic link loop"),
    "loop-b.txt": ("failed", "symbolic link loop"),
    "pipe.txt": ("failed", "not a regular file"),
    "notes.odt": ("skipped", "unsupported file type '.odt'"),
}


def test_every_bad_input_has_its_reason_and_the_rest_is_ingested(
    bad_corpus: Path, config: Path, tmp_path: Path, unreadable, capsys: pytest.CaptureFixture[str]
) -> None:
    unreadable(bad_corpus)
    report_path = tmp_path / "report.json"
    code = indexer_cli.main(
        ["ingest", str(bad_corpus), "--config", str(config), "--no-progress", "--report", str(report_path)]
    )
    assert code == 1  # partial failure
    report = json.loads(report_path.read_text())
    got = {f["source"]: (f["status"], f["error"]) for f in report["files"]}
    assert got.keys() == EXPECTED.keys()
    for source, (status, reason) in EXPECTED.items():
        assert got[source][0] == status, f"{source}: {got[source]}"
        if reason:
            assert reason in got[source][1], f"{source}: {got[source][1]}"
    err = capsys.readouterr().err
    assert "failed: scan.pdf: no extractable text" in err
    assert "skipped: notes.odt" in err
    store = EdgeStore(tmp_path / "store", "bad")
    try:
        store.open_collection()
        chunks = list(store.scroll(kind_filter("chunk")))
    finally:
        store.close()
    by_doc: dict[str, list] = {}
    for p in chunks:
        by_doc.setdefault(p.payload["doc_id"], []).append(p.payload)
    assert set(by_doc) == {"good.md", "good.pdf", "legacy-cp1251.txt", "one-line.txt"}
    assert [p["text"] for p in by_doc["legacy-cp1251.txt"]] == [LEGACY]
    assert by_doc["legacy-cp1251.txt"][0]["metadata"] == {"encoding": "cp1251"}
    long_line = by_doc["one-line.txt"]
    assert len(long_line) > 100
    assert max(p["token_count"] for p in long_line) <= 2048
    spans = sorted((p["start"], p["end"]) for p in long_line)
    assert spans[0][0] == 0
    assert spans[-1][1] == len((bad_corpus / "one-line.txt").read_text().rstrip())
    assert all(b[0] <= a[1] + 1 for a, b in zip(spans, spans[1:], strict=False))  # no gap but a space


def test_a_pdf_password_from_the_config_opens_encrypted_pdfs(bad_corpus: Path, config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text() + 'pdf_password = "s3cret"\n')
    report_path = tmp_path / "report.json"
    files = [str(bad_corpus / n) for n in ("encrypted.pdf", "encrypted-aes.pdf")]
    assert (
        indexer_cli.main(["ingest", *files, "--config", str(config), "--no-progress", "--report", str(report_path)])
        == 0
    )
    assert {f["status"] for f in json.loads(report_path.read_text())["files"]} == {"ok"}


def test_fail_fast_stops_at_the_first_failure(bad_corpus: Path, config: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    code = indexer_cli.main(
        [
            "ingest",
            str(bad_corpus),
            "--config",
            str(config),
            "--no-progress",
            "--fail-fast",
            "--report",
            str(report_path),
        ]
    )
    report = json.loads(report_path.read_text())
    assert code == 4  # blank.txt, alphabetically first, fails before anything is ingested
    assert [f["source"] for f in report["files"]] == ["blank.txt"]
    assert report["stopped"].startswith("--fail-fast: blank.txt")


def test_total_failure_exit_code(bad_corpus: Path, config: Path) -> None:
    files = [str(bad_corpus / n) for n in ("corrupt.pdf", "scan.pdf", "zero.txt")]
    assert indexer_cli.main(["ingest", *files, "--config", str(config), "--no-progress"]) == 4
