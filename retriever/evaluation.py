"""Evaluation on a BEIR-layout dataset: every mode, standard metrics (ir-measures), latency, sweeps.

Hits are chunks; a document's rank is the rank of its best chunk (later chunks of the same document
are dropped), so metrics are computed on documents, as BEIR's judgements are.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.encoder import Encoder
from indexer.extras import needs
from indexer.loaders import build_document
from indexer.models import Embedding
from indexer.modes import SearchMode
from indexer.records import KIND_CHUNK, kind_filter
from indexer.runtime import open_runtime
from indexer.schema import COLBERT
from retriever.api import Retriever, SearchHit
from retriever.datasets import BeirDataset, DatasetError

logger = logging.getLogger(__name__)

METRICS = ("nDCG@10", "Recall@10", "Recall@100", "MRR@10")
LATENCY = "median_ms"
HITS = 100  # chunks fetched per query: Recall@100 needs 100
SWEEP_DEPTHS = (100, 200, 400, 800)
SWEEP_RRF_KS = (2, 10, 30, 60, 100)
_DEPTH_MODES = {SearchMode.HYBRID, SearchMode.HYBRID_DBSF, SearchMode.HYBRID_COLBERT, SearchMode.COLBERT, SearchMode.M3}
_RRF_MODES = {SearchMode.HYBRID, SearchMode.HYBRID_COLBERT}


def _measures() -> dict[str, Any]:
    with needs("eval", "evaluation"):
        from ir_measures import RR, R, nDCG

    return {"nDCG@10": nDCG @ 10, "Recall@10": R @ 10, "Recall@100": R @ 100, "MRR@10": RR @ 10}


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over every judged query; a query with no hits counts as 0 (not skipped)."""
    import ir_measures

    measures = _measures()
    by_name = {str(m): name for name, m in measures.items()}
    totals = dict.fromkeys(measures, 0.0)
    judged_run = {q: docs for q, docs in run.items() if q in qrels and docs}
    for m in ir_measures.iter_calc(list(measures.values()), qrels, judged_run):
        totals[by_name[str(m.measure)]] += m.value
    return {name: total / len(qrels) for name, total in totals.items()}


def doc_run(hits: Sequence[SearchHit]) -> dict[str, float]:
    """Document ids ranked by their best chunk; the value encodes the rank (higher is better)."""
    ranked: dict[str, float] = {}
    for h in hits:
        if h.doc_id not in ranked:
            ranked[h.doc_id] = float(len(hits) - len(ranked))
    return ranked


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    latencies_ms: list[float] = field(repr=False)
    prefetch_limit: int = 0
    rrf_k: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **self.metrics,
            LATENCY: round(self.median_ms, 3),
            "prefetch_limit": self.prefetch_limit,
            "rrf_k": self.rrf_k,
        }


def run_mode(
    r: Retriever, dataset: BeirDataset, embeddings: dict[str, Embedding], mode: SearchMode, hits: int = HITS
) -> ModeResult:
    """Every query of the dataset, one search call each, timed (the queries are already encoded)."""
    run: dict[str, dict[str, float]] = {}
    latencies = []
    for qid, emb in embeddings.items():
        started = time.perf_counter()
        [result] = r.search_embeddings([emb], limit=hits, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = doc_run(result)
    s = r.settings.retrieval
    return ModeResult(mode.value, evaluate(dataset.qrels, run), latencies, s.prefetch_limit, s.rrf_k)


def ingest_dataset(dataset: BeirDataset, settings: Settings, encoder: Encoder, store: Any) -> Any:
    """The corpus as documents (id = the BEIR _id; the title, when any, heads the text)."""
    from indexer.pipeline import ingest_documents

    docs = []
    for did, (title, text) in dataset.corpus.items():
        body = f"{title}\n\n{text}" if title.strip() else text
        if not body.strip():
            continue
        docs.append(build_document(did, did, body.encode("utf-8"), [body]))
    report = ingest_documents(docs, settings, encoder, store)
    if report.failed:
        logger.warning("%d corpus documents failed: %s", len(report.failed), report.failed[0].error)
    return report


@dataclass
class EvalReport:
    dataset: str
    documents: int
    queries: int
    chunks: int
    model: str
    collection: str
    query_encoding_ms: float
    results: list[ModeResult]
    sweep: list[ModeResult] = field(default_factory=list)

    def best(self) -> dict[str, dict[str, Any]]:
        """The best sweep setting for each metric (lowest latency for the latency)."""
        rows = self.sweep or self.results
        out = {}
        for metric in METRICS:
            top = max(rows, key=lambda x: (x.metrics[metric], -x.median_ms))
            out[metric] = {**top.as_dict(), "value": top.metrics[metric]}
        fastest = min(rows, key=lambda x: x.median_ms)
        out[LATENCY] = {**fastest.as_dict(), "value": round(fastest.median_ms, 3)}
        return out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dataset": self.dataset,
            "documents": self.documents,
            "queries": self.queries,
            "chunks": self.chunks,
            "model": self.model,
            "collection": self.collection,
            "query_encoding_ms": round(self.query_encoding_ms, 3),
            "modes": {m.mode: {k: v for k, v in m.as_dict().items() if k != "mode"} for m in self.results},
        }
        if self.sweep:
            data["sweep"] = [m.as_dict() for m in self.sweep]
            data["best"] = self.best()
        return data


def format_table(results: Iterable[ModeResult], with_settings: bool = False) -> str:
    cols = ["mode", *(["depth", "rrf_k"] if with_settings else []), *METRICS, "median ms"]
    rows = []
    for m in results:
        row = [m.mode, *([str(m.prefetch_limit), str(m.rrf_k)] if with_settings else [])]
        row += [f"{m.metrics[k]:.4f}" for k in METRICS] + [f"{m.median_ms:.2f}"]
        rows.append(row)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        padded = zip(cells, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(padded))

    return "\n".join(line(r) for r in [cols, *rows])


def format_report(report: EvalReport) -> str:
    head = (
        f"dataset {report.dataset}: {report.documents} documents ({report.chunks} chunks), "
        f"{report.queries} queries; model {report.model}; query encoding {report.query_encoding_ms:.1f} ms/query "
        "(batched, the same for every mode; 'median ms' is the engine's time per query)"
    )
    parts = [head, "", format_table(report.results)]
    if report.sweep:
        parts += ["", "sweep (prefetch depth x RRF k):", format_table(report.sweep, with_settings=True), ""]
        parts.append("best setting per metric:")
        for metric, b in report.best().items():
            parts.append(
                f"  {metric:<10} {b['value']:.4f}  mode={b['mode']} prefetch_limit={b['prefetch_limit']} "
                f"rrf_k={b['rrf_k']}"
            )
    return "\n".join(parts)


def sweep_settings(
    modes: Sequence[SearchMode], depths: Sequence[int], rrf_ks: Sequence[int], hits: int, rrf_k: int
) -> list[tuple[SearchMode, int, int]]:
    """(mode, depth, k) to try: depth only where a prefetch exists, k only where RRF decides."""
    grid = []
    effective = sorted({max(d, hits) for d in depths})  # a prefetch is never shallower than the hits fetched
    for mode in modes:
        if mode not in _DEPTH_MODES:
            continue
        for depth in effective:
            for k in rrf_ks if mode in _RRF_MODES else [rrf_k]:
                grid.append((mode, depth, k))
    return grid


def run_eval(
    dataset: BeirDataset,
    settings: Settings,
    encoder: Encoder,
    *,
    existing: bool = False,
    index_dir: str | Path | None = None,
    modes: Sequence[SearchMode | str] | None = None,
    hits: int = HITS,
    sweep: bool = False,
    depths: Sequence[int] = SWEEP_DEPTHS,
    rrf_ks: Sequence[int] = SWEEP_RRF_KS,
) -> EvalReport:
    """Index the corpus into a fresh embedded collection (or use the configured ``existing`` one), run modes.

    A fresh collection lives in ``index_dir`` (default: a temporary folder, removed afterwards).
    """
    wanted = [SearchMode.parse(m) for m in (modes or list(SearchMode))]
    if settings.retrieval.min_score is not None:
        logger.warning("evaluation ignores retrieval.min_score (it applies to some modes only)")
        settings = settings.replace(retrieval={"min_score": None})
    with tempfile.TemporaryDirectory(prefix="m3-eval-") as tmp:
        if not existing:
            folder = Path(index_dir) if index_dir else Path(tmp)
            settings = settings.replace(
                qdrant={"url": None, "path": str(folder) if settings.qdrant.engine == "edge" else ":memory:"},
                collection={"name": f"eval-{dataset.name}"[:255]},
            )
        store = open_runtime(settings, "write", encoder=encoder).store
        try:
            if not existing:
                ingest_dataset(dataset, settings, encoder, store)
                if settings.qdrant.engine == "edge":
                    # Search the collection as `indexer ingest` leaves it: Edge optimizes when it is closed
                    # (segments indexed, int8 copies built), not after a small ingest.
                    store.close()
                    store = open_runtime(settings, "write", encoder=encoder).store
            retriever = Retriever(settings, encoder=encoder, store=store)
            chunks = store.count(kind_filter(KIND_CHUNK))
            ids = list(dataset.queries)
            started = time.perf_counter()
            encoded = encoder.encode_queries([dataset.queries[q] for q in ids])
            encoding_ms = (time.perf_counter() - started) * 1000 / max(len(ids), 1)
            embeddings = dict(zip(ids, encoded, strict=True))
            if not retriever.info.has(COLBERT):
                skipped = [m.value for m in wanted if m.needs_colbert]
                if skipped:
                    logger.warning("collection has no ColBERT vectors: skipping %s", ", ".join(skipped))
                wanted = [m for m in wanted if not m.needs_colbert]
            if not wanted:
                raise DatasetError("no mode to evaluate")
            results = [run_mode(retriever, dataset, embeddings, m, hits) for m in wanted]
            swept = []
            if sweep:
                for mode, depth, k in sweep_settings(wanted, depths, rrf_ks, hits, settings.retrieval.rrf_k):
                    r = Retriever(
                        settings.replace(retrieval={"prefetch_limit": depth, "rrf_k": k}),
                        encoder=encoder,
                        store=store,
                    )
                    swept.append(run_mode(r, dataset, embeddings, mode, hits))
        finally:
            store.close()
    return EvalReport(
        dataset=dataset.name,
        documents=len(dataset.corpus),
        queries=len(dataset.queries),
        chunks=chunks,
        model=encoder.name,
        collection=settings.collection.name,
        query_encoding_ms=encoding_ms,
        results=results,
        sweep=swept,
    )
