"""The two commands, run in-process through main(argv) and once as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import cli as indexer_cli
from retriever import cli as retriever_cli
from tests.helpers import CHUNK_SIZE, REPO, SAMPLES


@pytest.fixture
def config(tmp_path: Path, tiny_model_dir: Path) -> Path:
    cfg = tmp_path / "test.toml"
    cfg.write_text(
        f"""
[model]
name = "{tiny_model_dir}"
device = "cpu"
[chunking]
chunk_size = {CHUNK_SIZE}
chunk_overlap = 16
[qdrant]
path = "{tmp_path / "store"}"
[collection]
name = "cli_docs"
"""
    )
    return cfg


def ingest(config: Path, *args: str) -> int:
    return indexer_cli.main(["ingest", "--config", str(config), "--no-progress", *args])


@pytest.mark.slow
def test_ingest_then_search(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest(config, str(SAMPLES / "ru"), str(SAMPLES / "pdf")) == 0
    err = capsys.readouterr().err
    assert "done: 4 documents ingested" in err
    assert "0 failed" in err
    code = retriever_cli.main(["search", "сроки рассмотрения обращений", "--config", str(config), "--limit", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n 1. ") + out.startswith(" 1. ") == 1
    assert " 3. " in out
    assert "p." in out
    code = retriever_cli.main(
        [
            "search",
            "поставка",
            "--config",
            str(config),
            "--json",
            "--mode",
            "sparse",
            "--filter",
            "doc_id=dogovor-postavki.txt",
        ]
    )
    hits = json.loads(capsys.readouterr().out)
    assert code == 0
    assert hits
    assert {h["doc_id"] for h in hits} == {"dogovor-postavki.txt"}
    assert {"id", "score", "text", "source", "pages", "chunk_index", "metadata"} <= hits[0].keys()


def test_ingest_json_report(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest(config, str(SAMPLES / "en"), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["documents"] == 2
    assert report["chunks"] > 0
    assert report["tokens"] > 0
    assert {f["status"] for f in report["files"]} == {"ok"}


def test_partial_failure_exit_code(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("good text")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    assert ingest(config, str(docs)) == 1
    err = capsys.readouterr().err
    assert "failed: bad.pdf" in err
    assert "damaged" in err
    assert "1 documents ingested" in err


def test_total_failure_exit_code(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    assert ingest(config, str(tmp_path / "bad.pdf")) == 4
    assert ingest(config, str(tmp_path / "nothing-here")) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ingest(config, str(empty)) == 4
    assert "no files found" in capsys.readouterr().err


def test_fatal_errors_exit_3_with_one_line(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[chunking]\nchunk_size = 99999\n")
    assert ingest(bad, str(SAMPLES)) == 3
    assert capsys.readouterr().err.startswith("error: invalid configuration")
    assert ingest(config, str(SAMPLES), "--model", str(tmp_path / "no-model")) == 3
    err = capsys.readouterr().err
    assert "cannot load model" in err
    assert "Traceback" not in err
    assert retriever_cli.main(["search", "x", "--config", str(config), "--collection", "nope"]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_unreachable_server_fails_before_the_model_loads(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = ingest(config, str(SAMPLES), "--qdrant-url", "http://127.0.0.1:9", "--model", "/no/such/model")
    assert code == 3
    assert "cannot reach the Qdrant server at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_search_requests(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest(config, str(SAMPLES / "en")) == 0
    capsys.readouterr()
    assert retriever_cli.main(["search", "x", "--config", str(config), "--filter", "page>=many"]) == 3
    assert "needs a number" in capsys.readouterr().err
    assert retriever_cli.main(["search", " ", "--config", str(config)]) == 3
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        retriever_cli.main(["search", "x", "--mode", "bm25"])
    assert e.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("module", ["indexer", "retriever"])
def test_python_dash_m_works(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0
    assert "usage:" in out.stdout


@pytest.mark.slow
def test_help_does_not_import_torch() -> None:
    code = "import sys, indexer.cli, retriever.cli; print('torch' in sys.modules, 'FlagEmbedding' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_ingest_subprocess_exit_code(config: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer",
            "ingest",
            str(tmp_path / "bad.txt"),
            "--config",
            str(config),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 4
    assert "failed: bad.txt" in out.stderr
