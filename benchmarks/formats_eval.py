"""Heading-aware chunking against plain splitting, side by side, in one run, on structured documents.

The evaluation set of ``benchmarks/formats_corpus.py`` (DOCX contracts, HTML and Markdown policies,
English and Russian, known-item queries) is written to a temporary folder, read by the real loaders,
and ingested once per chunk size and chunking (``chunking.headings`` true / false) into fresh embedded
collections; the same query embeddings are then searched in each. Two nDCG@10 (ir-measures):

- **document**: corpus ids are file names, a document ranked by its best chunk (as ``retriever eval``);
- **passage**: the chunks as ranked; a chunk is relevant when it holds at least half of the query's
  answer sentence (by character offsets), and only the first such chunk counts (a known item).

    .venv/bin/python benchmarks/formats_eval.py --model DIR [--chunk-sizes 128,256,512] [--json FILE]

DIR is a local BGE-M3 (or, offline, the demo's stand-in: ``indexer.standin.build_standin_model``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.formats_corpus import write_corpus  # noqa: E402
from indexer.config import Settings  # noqa: E402
from indexer.encoder import BGEM3Encoder  # noqa: E402
from indexer.loaders import discover, load_file  # noqa: E402
from indexer.models import Document  # noqa: E402
from indexer.pipeline import ingest_documents  # noqa: E402
from indexer.store import open_store  # noqa: E402
from retriever.api import Retriever, SearchHit  # noqa: E402
from retriever.evaluation import doc_run, evaluate  # noqa: E402

MODES = ("dense", "sparse", "hybrid", "hybrid_colbert")
HITS = 100


def passage_run(hits: list[SearchHit], answer: tuple[str, int, int]) -> dict[str, float]:
    """Chunks ranked; the first one holding half of the answer is "answer", later ones are left out."""
    doc_id, start, end = answer
    ranked: dict[str, float] = {}
    for h in hits:
        overlap = min(end, h.end or 0) - max(start, h.start or 0)
        relevant = h.doc_id == doc_id and overlap * 2 >= end - start
        key = "answer" if relevant else h.id
        if key not in ranked:
            ranked[key] = float(len(hits) - len(ranked))
    return ranked


def evaluate_chunking(
    settings: Settings,
    encoder: BGEM3Encoder,
    docs: list[Document],
    embeddings: dict,
    answers: dict[str, tuple[str, int, int]],
    qrels: dict[str, dict[str, int]],
) -> dict:
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        started = time.perf_counter()
        report = ingest_documents(docs, settings, encoder, store)
        assert not report.failed, report.failed
        seconds = time.perf_counter() - started
        retriever = Retriever(settings, encoder=encoder, store=store)
        out = {"chunks": report.chunks, "tokens": report.tokens, "ingest_s": round(seconds, 2), "modes": {}}
        qids = list(embeddings)
        for mode in MODES:
            results = retriever.search_embeddings([embeddings[q] for q in qids], limit=HITS, mode=mode)
            docs_run = {q: doc_run(hits) for q, hits in zip(qids, results, strict=True)}
            passages = {q: passage_run(hits, answers[q]) for q, hits in zip(qids, results, strict=True)}
            out["modes"][mode] = {
                "document": evaluate(qrels, docs_run)["nDCG@10"],
                "passage": evaluate({q: {"answer": 1} for q in qids}, passages)["nDCG@10"],
            }
        return out
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a local BGE-M3-shaped model folder")
    ap.add_argument("--chunk-sizes", default="128,256,512")
    ap.add_argument("--overlap", type=int, default=16, help="chunk overlap in tokens (both chunkings)")
    ap.add_argument("--json", dest="json_file", help="also write the results here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.chunk_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, queries = write_corpus(root / "set")
        docs = [load_file(s) for s in discover([root / "set" / "docs"])]
        by_id = {d.doc_id: d for d in docs}
        answers = {}
        for q in queries:
            at = by_id[q.doc].text.index(q.answer)
            answers[q.qid] = (q.doc, at, at + len(q.answer))
        qrels = {q.qid: {q.doc: 1} for q in queries}
        base = Settings().replace(
            model={"name": args.model, "device": "cpu", "pooling": "auto"},
            qdrant={"engine": "edge"},
        )
        encoder = BGEM3Encoder(base.model, max_length=max(sizes))
        embeddings = dict(zip([q.qid for q in queries], encoder.encode_queries([q.text for q in queries]), strict=True))
        results: dict = {"model": args.model, "queries": len(queries), "documents": len(docs), "runs": {}}
        for size in sizes:
            for headings in (False, True):
                name = f"{size}-{'headings' if headings else 'plain'}"
                settings = base.replace(
                    chunking={"chunk_size": size, "chunk_overlap": args.overlap, "headings": headings},
                    qdrant={"path": str(root / "index" / name)},
                    collection={"name": "formats"},
                )
                results["runs"][name] = evaluate_chunking(settings, encoder, docs, embeddings, answers, qrels)
    print(f"model {args.model}: {len(docs)} documents, {len(queries)} queries; nDCG@10, plain -> heading-aware")
    print("| chunk size | chunks | mode | document | passage |")
    print("|---|---|---|---|---|")
    for size in sizes:
        plain, aware = results["runs"][f"{size}-plain"], results["runs"][f"{size}-headings"]
        for mode in MODES:
            p, a = plain["modes"][mode], aware["modes"][mode]
            print(
                f"| {size} | {plain['chunks']} -> {aware['chunks']} | {mode} | {p['document']:.4f} -> "
                f"{a['document']:.4f} | {p['passage']:.4f} -> {a['passage']:.4f} |"
            )
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
