"""How long a re-run over an unchanged corpus takes, next to the first run, on the embedded engine.

A corpus of N generated text files is ingested once, then the same command runs again (nothing
changed: every file is recognised by its recorded size and modification time and neither read nor
encoded), then again after touching every file (each is read and hashed, none is encoded). Uses the
tiny test model (tests/tiny_model.py), so the first run's encoding is far cheaper than BGE-M3's would
be: the ratios below understate the real gain.

    .venv/bin/python benchmarks/rerun_unchanged.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.config import Settings  # noqa: E402
from indexer.encoder import BGEM3Encoder  # noqa: E402
from indexer.pipeline import ingest  # noqa: E402
from indexer.store import open_store  # noqa: E402
from tests.tiny_model import build_tiny_m3  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_m3(root / "model")
        corpus = root / "corpus"
        corpus.mkdir()
        for i in range(args.files):
            (corpus / f"doc{i:05d}.txt").write_text(f"Document {i}. " + "Terms of supply and payment. " * 40)
        settings = Settings().replace(
            model={"name": str(model), "device": "cpu", "batch_size": 32},
            chunking={"chunk_size": 128, "chunk_overlap": 16},
            qdrant={"path": str(root / "store")},
        )
        encoder = BGEM3Encoder(settings.model, max_length=128)

        def run(label: str) -> float:
            store = open_store(settings.qdrant, settings.collection.name)
            started = time.perf_counter()
            report = ingest([corpus], settings, encoder, store, progress=False)
            seconds = time.perf_counter() - started
            store.close()
            print(f"{label:>34}: {seconds:7.2f} s  ({report.documents} ingested, {report.unchanged} unchanged)")
            return seconds

        first = run("first run")
        unchanged = run("re-run, nothing changed")
        for f in corpus.iterdir():
            os.utime(f)
        touched = run("re-run, every file touched")
        print(f"first / unchanged re-run: {first / unchanged:.1f}x; first / touched re-run: {first / touched:.1f}x")


if __name__ == "__main__":
    main()
