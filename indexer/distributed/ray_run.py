"""``indexer ingest --ray``: one ingest run spread over a Ray cluster with Ray Data.

The driver opens the store, checks the collection, repairs what dead writers left (``versions.recover``),
reads the document records, and decides per file from its name and ``stat`` what the cluster must look at
(``work.plan``: files unchanged by size and modification time are never read). Ray Data then reads, hashes,
parses and chunks on CPU tasks (``work.parse``) and encodes on an actor pool, one model per GPU (or per
node without one). On a Qdrant server the actors also write: each batch of documents is claimed, encoded,
written and completed under the run's leases (``work.commit``), so vectors never pass through the driver.
With an embedded store (Edge, local mode: one process only) the actors hand the vectors back and the
driver commits them, the same way. Documents another live writer held get a second round that waits for
them; then ``--prune`` and the report, as in a single-process run.

Failures: an actor that dies is restarted by Ray and its batch is run again; the new attempt belongs to the
same run (one run id for driver and actors), so it takes over the leases its dead attempt left and writes
the same point ids again. A run that stops (the job fails, the driver dies) leaves leases that expire; the
next run repairs those documents (see ``indexer.leases``).
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer import versions
from indexer.admin import prune as prune_root
from indexer.changes import find_items, item_doc_id
from indexer.chunking import Chunker
from indexer.config import Settings
from indexer.distributed.partition import Partition
from indexer.distributed.work import Parsed, Task, commit, parse, plan, precomputed, prepare_collection, stopped_by
from indexer.encoder import BATCHES_PER_CALL, Encoder, M3Tokenizer, resolve_model_dir
from indexer.errors import EncodingError, StoreError
from indexer.extras import needs
from indexer.leases import Leases, LeaseTimings, Owner
from indexer.models import Chunk, Embedding
from indexer.report import IngestReport, IngestStopped
from indexer.runtime import collection_spec
from indexer.schema import CollectionSpec
from indexer.store import SerializedStore, Store
from indexer.writer import Writer

logger = logging.getLogger(__name__)

DOCS_PER_BATCH = 8  # documents per Ray Data batch (parsing, and one actor call)
_chunkers: dict[tuple[Any, ...], Chunker] = {}  # per worker process: the tokenizer loads once


def ingest_on_ray(
    paths: Sequence[Path | str],
    settings: Settings,
    encoder: Encoder,
    store: Store,
    *,
    address: str | None = None,
    recreate: bool = False,
    progress: bool = True,
    prune: bool = False,
    fail_fast: bool = False,
    partition: Partition | None = None,
    owner: Owner | None = None,
    actors: int | None = None,
    docs_per_batch: int = DOCS_PER_BATCH,
) -> IngestReport:
    """``indexer.pipeline.ingest`` on a Ray cluster (``address``: a running cluster's; None: ``RAY_ADDRESS``
    or a local Ray started here). The same report, points, records and leases as ``ingest``; ``encoder`` is
    only read for its name, sizes and fingerprint here (the actors load their own). ``actors``: encoding
    actors (default: one per GPU, else one per node)."""
    with needs("ray", "indexer ingest --ray"):
        import ray
        import ray.data
    started = time.perf_counter()
    report = IngestReport(collection=store.collection)
    items, found = find_items(paths, settings, report)
    if partition is not None:
        items = [item for item in items if partition.holds(item_doc_id(item))]
    owner = owner or Owner.new("ingest --ray " + " ".join(str(p) for p in paths))
    store = store if isinstance(store, SerializedStore) else SerializedStore(store)
    spec = collection_spec(settings, encoder)
    timings = LeaseTimings.from_settings(settings.ingest)
    leases = Leases(store, owner, timings, retries=settings.ingest.write_retries)
    writer = _writer(store, settings, leases)
    try:
        if recreate:
            store.ensure_collection(spec, recreate=True)
        prepare_collection(store, settings, spec, encoder.name, encoder.fingerprint)
        report.repaired = versions.recover(store, leases, writer)
        known = {r.doc_id: r for r in versions.document_records(store)}
        tasks = plan(items, report.files, known, settings)
        if fail_fast and report.failed:  # decided by the driver already (unreadable, too large)
            report.stopped, tasks = f"--fail-fast: {report.failed[0].source}: {report.failed[0].error}", []
        job = _Job(ray, settings, owner, store, leases, writer, report, progress, actors, docs_per_batch, spec)
        job.address = address
        wait = 0.0
        while tasks:
            job.run(tasks, wait, fail_fast)
            busy = [t for t in tasks if report.files[t.index].status == "busy"]
            if not busy or wait or report.stopped:
                break
            states = leases.read(item_doc_id(t.item) for t in busy)  # their records now: another run wrote them
            tasks = [Task(t.index, t.item, states[item_doc_id(t.item)].record) for t in busy]
            wait = timings.busy_wait_seconds
        if prune and report.stopped is None:
            records = list(versions.document_records(store))
            mine = [r for r in records if partition is None or partition.holds(r.doc_id)]
            for root, present in found.items():
                report.pruned.extend(prune_root(writer, leases, mine, root, present))
        writer.close()
    except IngestStopped:
        report.seconds = time.perf_counter() - started
        raise
    except StoreError as e:
        report.seconds = time.perf_counter() - started
        raise IngestStopped.by_store(e, report) from e
    finally:
        leases.close()
    report.seconds = time.perf_counter() - started
    logger.info("ingest --ray: %s", report.summary())
    return report


def _writer(store: Store, settings: Settings, leases: Leases) -> Writer:
    i = settings.ingest
    return Writer(
        store,
        max_points=i.write_batch_points,
        max_bytes=i.write_batch_bytes,
        retries=i.write_retries,
        fence=leases.fence,
    )


class _Job:
    """The Ray Data side of one run: connects, builds the dataset of each round, merges what comes back."""

    def __init__(
        self,
        ray: Any,
        settings: Settings,
        owner: Owner,
        store: Store,
        leases: Leases,
        writer: Writer,
        report: IngestReport,
        progress: bool,
        actors: int | None,
        docs_per_batch: int,
        spec: CollectionSpec,
    ) -> None:
        self.ray, self.settings, self.owner, self.report = ray, settings, owner, report
        self.store, self.leases, self.writer = store, leases, writer
        self.remote_writes = store.engine == "server"  # embedded stores: one process, the driver's
        self.progress, self.actors, self.docs_per_batch = progress, actors, max(1, docs_per_batch)
        self.group_size = settings.model.batch_size * BATCHES_PER_CALL
        self.spec = spec
        self.address: str | None = None

    def run(self, tasks: list[Task], wait: float, fail_fast: bool) -> None:
        pending: list[Parsed] = []
        try:
            for blob in self._outputs(tasks, wait):
                if self.remote_writes:
                    index, result = pickle.loads(blob)
                    self.report.files[index] = result
                else:
                    parsed: Parsed = pickle.loads(blob)
                    self.report.files[parsed.index] = parsed.result
                    pending.append(parsed)
                    if len(pending) >= self.docs_per_batch:
                        self._commit_here(pending, wait)
                        pending = []
                if fail_fast and (failed := self.report.failed):
                    self.report.stopped = f"--fail-fast: {failed[0].source}: {failed[0].error}"
                    break
            self._commit_here(pending, wait)
        except StoreError:
            raise
        except Exception as e:  # a failed Ray job: its task errors arrive wrapped in Ray's own exceptions
            cause = stopped_by(e)
            if cause is not None:
                raise cause from e
            raise IngestStopped(
                f"the Ray job failed: {e}. What was complete is kept; run the same command again to finish",
                self.report,
            ) from e

    def _commit_here(self, docs: list[Parsed], wait: float) -> None:
        if docs:
            commit(docs, self.leases, self.writer, self.spec, precomputed(docs), self.group_size, wait)

    def _outputs(self, tasks: list[Task], wait: float) -> Iterator[bytes]:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, logging_level=logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = self.progress
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        actors = self.actors or gpus or max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
        parsers = max(1, cpus - (0 if gpus else actors))  # the CPUs beside the encoding actors
        # A task pool of another size than the actor pool: Ray Data then parses in CPU tasks of their own
        # instead of fusing parsing into the encoding actors (where it would keep a GPU waiting).
        parsers += parsers == actors
        rows = [{"blob": pickle.dumps(t)} for t in tasks]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / self.docs_per_batch)))
        ds = ds.map_batches(
            _parse_batch,
            batch_size=self.docs_per_batch,
            batch_format="numpy",
            fn_kwargs={"settings": self.settings},
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=parsers),
        )
        ds = ds.map_batches(
            _EncodeActor,
            batch_size=self.docs_per_batch,
            batch_format="numpy",
            fn_constructor_kwargs={
                "settings": self.settings,
                "owner": (self.owner.label, self.owner.run_id),
                "write": self.remote_writes,
            },
            fn_kwargs={"wait": wait},
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=1,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield from batch["blob"]


# ------------------------------------------------------------------------------------------- on the workers


def _chunker(settings: Settings) -> Chunker:
    c = settings.chunking
    key = (settings.model.name, c.chunk_size, c.chunk_overlap, c.headings)
    if key not in _chunkers:
        tokenizer: Any = M3Tokenizer(resolve_model_dir(settings.model.name))  # as Encoder.tokenizer
        _chunkers[key] = Chunker(tokenizer, c.chunk_size, c.chunk_overlap, headings=c.headings)
    return _chunkers[key]


def _parse_batch(batch: dict[str, np.ndarray], settings: Settings) -> dict[str, np.ndarray]:
    """CPU tasks: read, hash, parse and chunk each file of the batch."""
    chunker = _chunker(settings)
    out = [pickle.dumps(parse(pickle.loads(blob), settings, chunker)) for blob in batch["blob"]]
    return {"blob": np.array(out, dtype=object)}


class _EncodeActor:
    """One model per actor; on a server it also claims, writes and completes its batch's documents."""

    def __init__(self, settings: Settings, owner: tuple[str, str], write: bool) -> None:
        from indexer.runtime import load_encoder
        from indexer.store import open_store

        self.settings, self.write = settings, write
        self.encoder = load_encoder(settings)
        self.spec = collection_spec(settings, self.encoder)
        self.group_size = settings.model.batch_size * BATCHES_PER_CALL
        self.owner = Owner.new(f"{owner[0]} (ray worker)", run_id=owner[1])
        self.timings = LeaseTimings.from_settings(settings.ingest)
        self.store = SerializedStore(open_store(settings.qdrant, settings.collection.name)) if write else None

    def encode(self, chunks: list[Chunk]) -> list[Embedding]:
        return self.encoder.encode_passages([c.text for c in chunks])

    def __call__(self, batch: dict[str, np.ndarray], wait: float) -> dict[str, np.ndarray]:
        docs: list[Parsed] = [pickle.loads(blob) for blob in batch["blob"]]
        if self.store is None:
            self._attach_embeddings(docs)
            return {"blob": np.array([pickle.dumps(p) for p in docs], dtype=object)}
        i = self.settings.ingest
        with Leases(self.store, self.owner, self.timings, retries=i.write_retries) as leases:
            writer = _writer(self.store, self.settings, leases)
            commit(docs, leases, writer, self.spec, self.encode, self.group_size, wait)
        return {"blob": np.array([pickle.dumps((p.index, p.result)) for p in docs], dtype=object)}

    def _attach_embeddings(self, docs: list[Parsed]) -> None:
        """The driver writes: encode every document to write, in groups; a failed group fails its documents."""
        group: list[tuple[Parsed, Chunk]] = [(p, c) for p in docs if p.document is not None for c in p.chunks]
        for start in range(0, len(group), self.group_size):
            part = group[start : start + self.group_size]
            live = [(p, c) for p, c in part if p.document is not None]
            try:
                embeddings = self.encode([c for _, c in live])
            except EncodingError as e:
                for p, _ in live:
                    p.document, p.chunks, p.embeddings = None, (), None
                    p.result.status, p.result.error = "failed", str(e)
                continue
            for (p, _), embedding in zip(live, embeddings, strict=True):
                p.embeddings = [*(p.embeddings or []), embedding]
