"""Ingest throughput against the model's own speed, in one run, on a random-weight BGE-M3.

Builds (once, cached under .cache/bench/) a model of BGE-M3's exact architecture with random weights:
XLM-RoBERTa large (24 layers, hidden 1024, 16 heads, FFN 4096, 8194 positions, vocabulary 250002),
ColBERT head 1024 -> 1024, sparse head 1024 -> 1. ``--layers N`` cuts the depth only (same width and
vocabulary), which leaves less model time to hide the rest behind. The tokenizer is NOT XLM-R's
SentencePiece (it cannot be downloaded here): it is a byte-level-free BPE trained on the English and
Russian benchmark corpus with tests/tiny_model.py's recipe, so token counts per character differ.

The corpus: documents of English and Russian sentences (samples/ and the tiny model's corpus), one
chunk each (chunk_size 8192): most of 30-512 tokens, some of 512-1024, some of 2048-8192. Printed,
each measured in its own process (peak RSS per phase):

  (a) plain transformers forward over the same chunk texts, length-sorted token-budget batches;
  (b) ``indexer.pipeline.ingest`` end to end into Qdrant Edge, or a server (``--qdrant-url``, ``--server``)
      (weights loaded beforehand, timed apart);
  (c) the naive loop: per document, FlagEmbedding ``encode()`` then upsert;
  ratios b/a and b/c, and per-stage tokens/s per CPU core (loading, chunking, tokenizing, the
  sparse/ColBERT heads and their conversion to records, building points and writing them to Edge, and
  the same points as a server's gRPC requests).

    .venv/bin/python benchmarks/ingest_throughput.py --layers 4 [--docs 200] [--scale 10] [--skip-naive] [--rounds 3]
        [--device cuda]   # on a GPU: float16, and the GPU's utilisation (nvidia-smi) and peak memory per phase

``--rounds N`` runs (a) and (b) N times, each round in another order, and sums them: on a shared
machine whose speed drifts by several per cent between phases minutes apart, that is what makes b/a readable.

``--scale N`` runs only (b), at 1x and Nx the corpus, and compares their peak memory (``--tiny``: with the
tiny test model widened to BGE-M3's 1024-d ColBERT output, so that whatever the run keeps per token
shows, at a fraction of the model time). The Nx corpus is N
copies of the 1x corpus's document lengths (other sentences), and its long chunks come two to a
document, each longer than a third of ``--max-batch-tokens`` (5,462-8,000 tokens by default), so
that each copy runs its two in one batch and no batch holds three: both corpora reach the same
largest batch, whatever the threads' timing: peak memory
then shows what grows with the corpus, not a bigger batch shape. Peak RSS is the kernel's high-water
mark; the heap (anonymous RSS) and mapped files (file-backed RSS: libraries and Edge's mmapped vectors)
are printed apart, with the same points written into Qdrant Edge alone (no model) at 1x and Nx: the
memory any user of the engine pays for the data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import GpuUse, PeakMemory, on_gpu, standin_process  # noqa: E402

CHUNK_SIZE = 8192
SHAPES = [(0.74, 30, 512), (0.22, 512, 1024), (0.04, 2048, 8000)]  # share of documents, token range


# ---------------------------------------------------------------------------------------- set-up


def build_model(target: Path, layers: int) -> Path:
    """BGE-M3's architecture with random weights (seeded), and a BPE tokenizer trained on the corpus."""
    if (target / "sparse_linear.pt").is_file():
        return target
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from tests.tiny_model import _train_tokenizer

    tokenizer = _train_tokenizer(corpus_sentences(), 32000)
    tokenizer.save_pretrained(str(target))
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        num_hidden_layers=layers,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=8194,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(str(target), safe_serialization=True)
    torch.save(torch.nn.Linear(1024, 1024).state_dict(), target / "colbert_linear.pt")
    torch.save(torch.nn.Linear(1024, 1).state_dict(), target / "sparse_linear.pt")
    return target


def corpus_sentences() -> list[str]:
    from tests.tiny_model import CORPUS_FILE

    lines = [ln.strip() for ln in CORPUS_FILE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    for p in sorted((REPO / "samples").rglob("*")):
        if p.suffix in (".txt", ".md"):
            lines += [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if len(ln.strip()) > 20]
    return lines


def build_corpus(target: Path, model: Path, docs: int, scale: int = 1, pair_for: int | None = None) -> None:
    """``docs * scale`` text files whose token counts follow SHAPES (deterministic).

    ``pair_for``: a batch budget (padded tokens). The long chunks come two to a document (the chunker cuts
    between the two parts), so that the feed queues them together and the model runs them in one batch
    whatever the threads' timing; and each is longer than a third of the budget, so that no batch holds
    three (two copies' long chunks meeting in one window would otherwise make a larger batch than any
    of the 1x corpus): every copy reaches the same largest batch.
    """
    from indexer.encoder import M3Tokenizer

    tok = M3Tokenizer(model)
    sentences = corpus_sentences()
    target.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)

    def text_of(goal: int) -> str:
        text: list[str] = []
        tokens = 2
        while True:
            s = rng.choice(sentences)
            cost = len(tok(s, add_special_tokens=False)["input_ids"]) + 1
            if tokens + cost > goal:
                if not text:  # not even one sentence: another one (an empty file would fail the run)
                    continue
                return "\n".join(text)
            text.append(s)
            tokens += cost

    n = 0
    for _ in range(scale):  # each copy: other sentences, the same lengths (the same batch shapes)
        lengths = random.Random(1)
        for share, low, high in SHAPES:
            count = max(1 if high < 2048 else 2, round(docs * share))  # two long ones: one full batch
            if pair_for is not None and high >= 2048:
                floor = max(low, min(high, pair_for // 3 + 1))
                parts = [[lengths.randint(floor, high) for _ in range(2)] for _ in range(count // 2)]
                parts = [[a, max(b, CHUNK_SIZE + 104 - a)] for a, b in parts]  # too long to share one chunk
            else:
                parts = [[lengths.randint(low, high)] for _ in range(count)]
            for goals in parts:
                text = "\n\n".join(text_of(goal) for goal in goals)
                (target / f"doc{n:05d}.txt").write_text(text + "\n", encoding="utf-8")
                n += 1


def settings_for(
    model: Path,
    store: Path,
    max_batch_tokens: int,
    mmap_threshold_kb: int | None = None,
    device: str = "cpu",
    server: str | None = None,
):  # -> Settings
    """The run's settings: Qdrant Edge in ``store``, or a server at ``server`` ("URL GRPC_PORT"; the
    collection named after ``store``, so that every phase writes its own)."""
    from indexer.config import Settings

    qdrant: dict = {"engine": "edge", "path": str(store)}
    if server:
        url, port = server.split()
        qdrant = {"url": url, "grpc_port": int(port), "prefer_grpc": True, "api_key": os.environ.get("QDRANT_API_KEY")}
    settings = Settings().replace(
        model={"name": str(model), "device": device, "max_batch_tokens": max_batch_tokens},
        chunking={"chunk_size": CHUNK_SIZE, "chunk_overlap": 0},
        qdrant=qdrant,
        collection={"name": store.name if server else "bench"},
    )
    if mmap_threshold_kb is not None:
        settings = settings.replace(ingest={"malloc_mmap_threshold_kb": mmap_threshold_kb})
    return settings


# ---------------------------------------------------------------------------------------- phases (own process)


def load_chunks(corpus: Path, model: Path) -> list[str]:
    from indexer.chunking import Chunker
    from indexer.encoder import M3Tokenizer
    from indexer.loaders import discover, load_file

    chunker = Chunker(M3Tokenizer(model), CHUNK_SIZE, 0)
    return [c.text for f in discover([corpus], ("**/*",), ()) for c in chunker.split(load_file(f, None))]


def phase_plain(args: argparse.Namespace) -> dict:
    import torch

    from indexer.encoder import M3Tokenizer, plan_batches
    from indexer.encoder.forward import _import_backbone_class

    texts = load_chunks(args.corpus, args.model)
    ids = M3Tokenizer(args.model).encode_ids(texts)
    gpu = on_gpu(args.device)
    dtype = torch.float16 if gpu else torch.float32  # as the encoder runs (model.fp16, the default)
    model = _import_backbone_class().from_pretrained(str(args.model), dtype=dtype).to(args.device).eval()
    mem = PeakMemory()
    use = GpuUse(args.device) if gpu else None
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in plan_batches([len(x) for x in ids], args.max_batch_tokens):
            width = len(ids[batch[0]])
            input_ids = torch.full((len(batch), width), 1, dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            input_ids = input_ids.to(args.device)
            model(input_ids=input_ids, attention_mask=(input_ids != 1).long())
    gpu_stats = use.stop() if use is not None else {}  # waits for the device's last kernels
    seconds = time.perf_counter() - started
    return {"tokens": sum(map(len, ids)), "chunks": len(ids), "seconds": seconds, **mem.stop(), **gpu_stats}


def phase_ingest(args: argparse.Namespace) -> dict:
    from indexer.encoder import BGEM3Encoder
    from indexer.pipeline import ingest
    from indexer.store import open_store

    settings = settings_for(
        args.model, args.store, args.max_batch_tokens, args.mmap_threshold_kb, args.device, args.server
    )
    mem = PeakMemory()
    started = time.perf_counter()
    encoder = BGEM3Encoder(settings.model, CHUNK_SIZE)
    encoder.load()
    load_s = time.perf_counter() - started
    mem.count_from_here()
    use = GpuUse(args.device) if on_gpu(args.device) else None
    store = open_store(settings.qdrant, settings.collection.name)
    try:
        report = ingest([args.corpus], settings, encoder, store, progress=False)
    finally:
        gpu_stats = use.stop() if use is not None else {}
        if args.server:  # a phase's collection on the server is not kept
            store.client.delete_collection(settings.collection.name)  # type: ignore[attr-defined]
        store.close()
    assert not report.failed, report.failed[:3]
    out = {"tokens": report.tokens, "chunks": report.chunks, "seconds": report.seconds, "load_s": load_s}
    out |= {"encode_s": report.encode_seconds, "input_wait_s": report.model_input_wait_seconds}
    return out | {"write_wait_s": report.model_write_wait_seconds, **mem.stop(), **gpu_stats}


def phase_naive(args: argparse.Namespace) -> dict:
    """What peers write: per document, chunk, ``BGEM3FlagModel.encode`` the chunks, upsert the points."""
    from FlagEmbedding import BGEM3FlagModel

    from indexer.chunking import Chunker
    from indexer.encoder import M3Tokenizer, fit_multivector, sparse_from_lexical
    from indexer.loaders import discover, load_file
    from indexer.models import Embedding, EncodedChunk
    from indexer.points import to_point
    from indexer.schema import CollectionSpec
    from indexer.store import open_store

    settings = settings_for(args.model, args.store, args.max_batch_tokens)
    gpu = on_gpu(args.device)
    model = BGEM3FlagModel(str(args.model), use_fp16=gpu, devices=[args.device], batch_size=16)
    chunker = Chunker(M3Tokenizer(args.model), CHUNK_SIZE, 0)
    store = open_store(settings.qdrant, settings.collection.name)
    store.ensure_collection(CollectionSpec.for_model(settings.collection, 1024, 1024))
    mem = PeakMemory()
    use = GpuUse(args.device) if gpu else None
    tokens = chunks = 0
    started = time.perf_counter()
    for f in discover([args.corpus], ("**/*",), ()):
        doc_chunks = list(chunker.split(load_file(f, None)))
        out = model.encode(
            [c.text for c in doc_chunks],
            batch_size=16,
            max_length=CHUNK_SIZE,
            return_dense=True,
            return_sparse=True,
            return_colbert_vecs=True,
        )
        points = []
        for i, c in enumerate(doc_chunks):
            sparse = sparse_from_lexical(out["lexical_weights"][i])
            colbert = fit_multivector(out["colbert_vecs"][i])  # Qdrant's cap: needed by any loop
            points.append(to_point(EncodedChunk(c, Embedding(out["dense_vecs"][i], sparse, colbert))))
        store.upsert(points)
        tokens += sum(c.token_count for c in doc_chunks)
        chunks += len(doc_chunks)
    gpu_stats = use.stop() if use is not None else {}
    seconds = time.perf_counter() - started
    store.close()
    return {"tokens": tokens, "chunks": chunks, "seconds": seconds, **mem.stop(), **gpu_stats}


def phase_edge(args: argparse.Namespace) -> dict:
    """Qdrant Edge alone, as any user of it: the points of the same chunks (random vectors, no model; as many
    ColBERT rows as the encoder gives, pooled to Qdrant's cap), written in batches as the run writes them
    (glibc's allocator left as it is)."""
    import numpy as np

    from indexer.chunking import Chunker
    from indexer.encoder import M3Tokenizer, fit_multivector
    from indexer.loaders import discover, load_file
    from indexer.models import Embedding, EncodedChunk, SparseVec
    from indexer.points import to_point
    from indexer.schema import CollectionSpec
    from indexer.store import open_store
    from indexer.writer import Writer

    settings = settings_for(args.model, args.store, args.max_batch_tokens)
    chunker = Chunker(M3Tokenizer(args.model), CHUNK_SIZE, 0)
    chunks = [c for f in discover([args.corpus], ("**/*",), ()) for c in chunker.split(load_file(f, None))]
    spec = CollectionSpec.for_model(settings.collection, 1024, 1024, CHUNK_SIZE)  # the run's collection
    store = open_store(settings.qdrant, settings.collection.name)
    store.ensure_collection(spec)
    rng = np.random.default_rng(0)
    mem = PeakMemory()
    started = time.perf_counter()
    writer = Writer(store, settings.ingest.write_batch_points, settings.ingest.write_batch_bytes)
    for c in chunks:
        colbert = rng.standard_normal((c.token_count - 1, 1024), dtype=np.float32)
        colbert = fit_multivector(colbert / np.linalg.norm(colbert, axis=1, keepdims=True))  # as the encoder does
        dense = colbert[0].copy()
        sparse = SparseVec(tuple(range(1000, 1000 + min(64, c.token_count))), (0.1,) * min(64, c.token_count))
        writer.add(to_point(EncodedChunk(c, Embedding(dense, sparse, colbert)), spec))
    writer.close()
    store.close()
    seconds = time.perf_counter() - started
    return {"tokens": sum(c.token_count for c in chunks), "chunks": len(chunks), "seconds": seconds, **mem.stop()}


def phase_stages(args: argparse.Namespace) -> dict:
    """CPU seconds per stage on one thread each (tokens per CPU second = tokens/s per core)."""
    import torch

    from indexer.chunking import Chunker
    from indexer.encoder import BGEM3Encoder, fit_multivector
    from indexer.loaders import discover, load_file
    from indexer.models import EncodedChunk
    from indexer.points import to_point
    from indexer.schema import CollectionSpec
    from indexer.store import open_store
    from indexer.writer import Writer

    torch.set_num_threads(1)
    os.environ["RAYON_NUM_THREADS"] = "1"
    settings = settings_for(args.model, args.store, args.max_batch_tokens, device=args.device)
    encoder = BGEM3Encoder(settings.model, CHUNK_SIZE)
    out: dict[str, float] = {}

    def timed(name: str, fn):
        started = time.process_time()
        result = fn()
        out[name] = time.process_time() - started
        return result

    files = list(discover([args.corpus], ("**/*",), ()))
    docs = timed("loading", lambda: [load_file(f, None) for f in files])
    chunker = Chunker(encoder.tokenizer, CHUNK_SIZE, 0)
    chunks = timed("chunking", lambda: [c for d in docs for c in chunker.split(d)])
    ids = timed("tokenizing", lambda: encoder.tokenize([c.text for c in chunks]))
    out["tokens"] = sum(map(len, ids))
    # The heads and their conversion on a sample of the corpus (its forward pass is not timed).
    encoder.load()
    [replica] = encoder._replicas
    shorter = sorted((i for i in range(len(ids)) if len(ids[i]) <= 2048), key=lambda i: len(ids[i]))
    sample = shorter[:: max(1, len(shorter) // 16)]  # 16 chunks of every length up to 2048: a short run
    out["sample_tokens"] = sum(len(ids[i]) for i in sample)
    convert = write = 0.0
    points = []
    store = open_store(settings.qdrant, settings.collection.name)
    store.ensure_collection(CollectionSpec.for_model(settings.collection, encoder.dense_dim, encoder.colbert_dim))
    writer = Writer(store)
    for i in sample:
        x = torch.tensor([ids[i]], device=args.device)
        with torch.inference_mode():
            hidden = replica.backbone(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            started = time.process_time()
            packed = replica._heads(hidden, x, torch.ones_like(x, dtype=torch.bool), True).cpu().numpy()
            [e] = replica._unpack(packed, [len(ids[i])], True)
            e = type(e)(e.dense, e.sparse, fit_multivector(e.colbert))
            convert += time.process_time() - started
        started = time.process_time()
        points.append(to_point(EncodedChunk(chunks[i], e)))
        writer.add(points[-1])
        write += time.process_time() - started
    started = time.process_time()
    writer.close()
    write += time.process_time() - started
    store.close()
    # The same points as a server's gRPC upserts (built and serialized; not sent), in the writer's batches.
    from indexer.store.qdrant_wire import upsert_request

    started = time.process_time()
    for at in range(0, len(points), writer.max_points):
        upsert_request("c", points[at : at + writer.max_points], True).SerializeToString()
    out["server requests (gRPC)"] = time.process_time() - started
    out["heads and conversion"] = convert
    out["points and writing"] = write
    return out


PHASES = {
    "plain": phase_plain,
    "ingest": phase_ingest,
    "naive": phase_naive,
    "stages": phase_stages,
    "edge": phase_edge,
}


# ---------------------------------------------------------------------------------------- driver


def run_phase(
    name: str,
    model: Path,
    corpus: Path,
    work: Path,
    max_batch_tokens: int,
    *extra: str,
    tag: str = "",
    device: str = "cpu",
) -> dict:
    store = work / f"store-{name}-{corpus.name}{tag}"  # a new tag: a new store (an ingest into it encodes all)
    cmd = [sys.executable, __file__, "--phase", name, "--model", str(model), "--corpus", str(corpus)]
    cmd += ["--store", str(store), "--max-batch-tokens", str(max_batch_tokens), "--device", device, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def server_for(args: argparse.Namespace) -> contextlib.AbstractContextManager[str | None]:
    """The server (b) writes to, as "URL GRPC_PORT": ``--qdrant-url``, the stand-in (``--server``), or none."""
    if args.qdrant_url:
        return contextlib.nullcontext(f"{args.qdrant_url} {args.grpc_port}")
    return standin_process() if args.server else contextlib.nullcontext()


def combined(runs: list[dict]) -> dict:
    """Several runs of one phase as one: times, tokens and CPU summed, peaks the highest, the GPU's
    utilisation averaged over all its samples."""
    out = dict(runs[0])
    for r in runs[1:]:
        for k, v in r.items():
            if k == "gpu_util":
                continue
            out[k] = max(out[k], v) if k.startswith(("peak", "gpu_peak")) else out[k] + v
    utils = [(r["gpu_util"], r["gpu_samples"]) for r in runs if r.get("gpu_util") is not None]
    if "gpu_util" in out:
        out["gpu_util"] = sum(u * n for u, n in utils) / sum(n for _, n in utils) if utils else None
    return out


def rate(r: dict) -> float:
    return r["tokens"] / r["seconds"]


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=24, help="transformer layers (BGE-M3: 24)")
    ap.add_argument("--docs", type=int, default=200, help="documents (one chunk each)")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument(
        "--mmap-threshold-kb",
        type=int,
        help="(b)'s ingest.malloc_mmap_threshold_kb (0: glibc's sliding threshold; default: the configured one)",
    )
    ap.add_argument(
        "--scale", type=int, default=0, help="only (b): peak memory at 1x and at this many times the corpus"
    )
    ap.add_argument("--skip-naive", action="store_true", help="leave out (c), the slowest")
    ap.add_argument("--rounds", type=int, default=1, help="run (a) and (b) this many times, interleaved, and sum them")
    ap.add_argument(
        "--tiny", action="store_true", help="the tiny test model with 1024-d ColBERT (a cheap --scale memory check)"
    )
    ap.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N: every phase on it, float16 on a GPU (model.fp16)"
    )
    ap.add_argument(
        "--server",
        action="store_true",
        help="(b) writes to a loopback Qdrant in its own process (tests/qdrant_standin, over gRPC), not to Edge",
    )
    ap.add_argument(
        "--qdrant-url",
        help="(b) writes to this Qdrant server over gRPC (--grpc-port; QDRANT_API_KEY), a collection per phase",
    )
    ap.add_argument("--grpc-port", type=int, default=6334)
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--server-at", dest="server", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return

    if args.tiny:
        from tests.tiny_model import build_tiny_m3

        target = REPO / ".cache" / "bench" / "tiny-colbert1024"
        model = target if (target / "sparse_linear.pt").is_file() else build_tiny_m3(target, colbert_dim=1024)
        print(f"model: the tiny test model (hidden 64, 2 layers) with 1024-d ColBERT; {os.cpu_count()} CPUs")
    else:
        model = build_model(REPO / ".cache" / "bench" / f"m3-random-{args.layers}l", args.layers)
        precision = "fp16" if on_gpu(args.device) else "fp32"
        print(f"model: BGE-M3 architecture, random weights, {args.layers} layers; {os.cpu_count()} CPUs")
        print(f"device: {args.device}, torch {precision}")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp, server_for(args) as server:
        work = Path(tmp)
        corpus = work / "corpus"
        build_corpus(corpus, model, args.docs, pair_for=args.max_batch_tokens if args.scale else None)
        # (b)'s own arguments: the heap's threshold when given, the server it writes to when there is one
        ingest_args = [] if args.mmap_threshold_kb is None else ["--mmap-threshold-kb", str(args.mmap_threshold_kb)]
        ingest_args += ["--server-at", server] if server else []
        if server:
            print(f"(b) writes to a Qdrant server in another process ({server}), not to Qdrant Edge")
        if args.scale:
            big = work / f"corpus-x{args.scale}"
            build_corpus(big, model, args.docs, args.scale, pair_for=args.max_batch_tokens)
            kib = settings_for(model, work, args.max_batch_tokens, args.mmap_threshold_kb).ingest
            print(f"ingest.malloc_mmap_threshold_kb = {kib.malloc_mmap_threshold_kb} (0: glibc's sliding threshold)")
            one, many = (
                run_phase("ingest", model, c, work, args.max_batch_tokens, *ingest_args, device=args.device)
                for c in (corpus, big)
            )
            alone = [run_phase("edge", model, c, work, args.max_batch_tokens) for c in (corpus, big)]
            table = [("ingest", "1x", one), ("ingest", f"{args.scale}x", many)]
            table += [("Edge alone", "1x", alone[0]), ("Edge alone", f"{args.scale}x", alone[1])]
            for what, label, r in table:
                print(
                    f"{what:<10} {label:>4}: {r['chunks']:6d} chunks {r['tokens']:9d} tokens {rate(r):9.1f} tok/s  "
                    f"peak RSS {mib(r['peak_rss'])} (heap {mib(r['peak_anon'])}, mapped files {mib(r['peak_file'])})"
                )
            print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            print(
                f"peak RSS {args.scale}x / 1x: {many['peak_rss'] / one['peak_rss']:.2f}; "
                f"heap {many['peak_anon'] / one['peak_anon']:.2f}; "
                f"mapped files +{mib(many['peak_file'] - one['peak_file'])} "
                f"(Edge alone: +{mib(alone[1]['peak_file'] - alone[0]['peak_file'])}, "
                f"its peak RSS +{mib(alone[1]['peak_rss'] - alone[0]['peak_rss'])})"
            )
            return
        stages = run_phase("stages", model, corpus, work, args.max_batch_tokens, device=args.device)
        phases = {"a": ("plain", []), "b": ("ingest", ingest_args)}
        runs: dict[str, list[dict]] = {"a": [], "b": []}
        for n in range(args.rounds):  # each round in the other order, so that the machine's drift evens out
            for key in ("a", "b") if n % 2 == 0 else ("b", "a"):
                name, extra = phases[key]
                done = run_phase(
                    name, model, corpus, work, args.max_batch_tokens, *extra, tag=f"-{n}", device=args.device
                )
                runs[key].append(done)
        plain, ingest = combined(runs["a"]), combined(runs["b"])
        naive = (
            None
            if args.skip_naive
            else run_phase("naive", model, corpus, work, args.max_batch_tokens, device=args.device)
        )
    print(
        f"corpus: {runs['a'][0]['chunks']} chunks, {runs['a'][0]['tokens']} tokens (30-8000 per chunk), "
        f"batches of at most {args.max_batch_tokens} padded tokens"
    )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = [("(a) plain transformers forward", plain), ("(b) indexer ingest, end to end", ingest)]
    rows += [("(c) naive per-document encode()+upsert", naive)] if naive else []
    for label, r in rows:
        print(
            f"{label:<40} {rate(r):9.1f} tok/s  {r['seconds']:7.1f} s  peak RSS {mib(r['peak_rss'])}  "
            f"CPU {r['user_s']:.0f} s user + {r['sys_s']:.0f} s kernel, {r['faults'] / 1e6:.2f} M page faults"
        )
    for label, r in rows:
        if "gpu_peak" in r:
            util = "not sampled (no nvidia-smi)" if r["gpu_util"] is None else f"{r['gpu_util']:.0f} % on average"
            print(f"{label[:3]} GPU utilisation {util} ({r['gpu_samples']} samples), peak memory {mib(r['gpu_peak'])}")
    print(f"weights load before (b): {ingest['load_s'] / args.rounds:.1f} s")
    print(
        f"(b) the model: {ingest['encode_s']:.1f} s encoding, waited {ingest['input_wait_s']:.1f} s for input "
        f"(the CPU stages) and {ingest['write_wait_s']:.1f} s for writes"
    )
    if args.rounds > 1:
        each = [f"{rate(b) / rate(a):.3f}" for a, b in zip(runs["a"], runs["b"], strict=True)]
        print(f"{args.rounds} rounds (the rows above: their sums); b/a of each round: {'  '.join(each)}")
    print(f"b/a = {rate(ingest) / rate(plain):.3f}" + (f"   b/c = {rate(ingest) / rate(naive):.3f}" if naive else ""))
    where = " (the heads on the device)" if on_gpu(args.device) else ""
    print(f"per-stage tokens/s per CPU core (one thread each){where}:")
    for name in ("loading", "chunking", "tokenizing"):
        print(f"  {name:<22} {stages['tokens'] / max(stages[name], 1e-9):12,.0f}")
    for name in ("heads and conversion", "points and writing", "server requests (gRPC)"):
        print(f"  {name:<22} {stages['sample_tokens'] / max(stages[name], 1e-9):12,.0f}  (on a sample of the chunks)")


if __name__ == "__main__":
    main()
