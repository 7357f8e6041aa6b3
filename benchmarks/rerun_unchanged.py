"""How long a re-run over an unchanged corpus takes, next to the first run, on the embedded engine.

A corpus of N generated text files is ingested once, then the same command runs again (nothing
changed: every file is recognised by its recorded size and modification time and neither read nor
encoded), then again after touching every file (each is read and hashed, none is encoded). Uses the
tiny test model (tests/tiny_model.py), so the first run's encoding is far cheaper than BGE-M3's would
be: the ratios below understate the real gain.

Then the start-up target: ``indexer ingest`` re-run from the command line in a fresh process, as a
user runs it, its CPU time (user + system, the process and its children) and whether it imported
torch, transformers, qdrant-client or langchain (it should not: nothing needs encoding).

    .venv/bin/python benchmarks/rerun_unchanged.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from indexer.config import Settings  # noqa: E402
from indexer.encoder import BGEM3Encoder  # noqa: E402
from indexer.pipeline import ingest  # noqa: E402
from indexer.store import open_store  # noqa: E402
from tests.tiny_model import build_tiny_m3  # noqa: E402

HEAVY = ("torch", "transformers", "qdrant_client", "langchain_text_splitters", "FlagEmbedding")
# Runs the CLI in this process and reports, on stderr, which heavy packages it imported.
CLI = (
    "import sys, runpy; sys.argv = ['indexer', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('indexer.cli', run_name='__main__')\n"
    "finally:\n"
    f"    print('heavy imports:', sorted(m for m in {HEAVY!r} if m in sys.modules) or 'none', file=sys.stderr)\n"
)


def cli_rerun(corpus: Path, model: Path, store: Path) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, heavy imports) of ``indexer ingest`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    cmd = [sys.executable, "-c", CLI, "ingest", str(corpus), "--qdrant-path", str(store), "--model", str(model)]
    cmd += ["--chunk-size", "128", "--chunk-overlap", "16", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):  # 3: nothing to do
        raise SystemExit(f"indexer ingest failed ({done.returncode}):\n{done.stderr[-3000:]}")
    heavy = [ln for ln in done.stderr.splitlines() if ln.startswith("heavy imports:")][-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, heavy


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
        cpu, wall, heavy = cli_rerun(corpus, model, root / "store")
        print(
            f"`indexer ingest` re-run, {args.files} unchanged files, fresh process: {cpu:.2f} s CPU (target 2 s), "
            f"{wall:.2f} s wall; {heavy}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
