"""What an ingest run reports: per file status, counts, and the summary line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.errors import StoreError


@dataclass(slots=True)
class FileResult:
    source: str
    status: str = "ok"  # ok | unchanged | skipped | failed | busy (another writer was changing it)
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    doc_id: str | None = None
    content_hash: str | None = None


@dataclass(slots=True)
class IngestReport:
    collection: str
    files: list[FileResult] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    repaired: int = 0  # documents left unfinished by an earlier run and repaired by this one
    stopped: str | None = None  # why the run stopped before the end (--fail-fast), if it did
    seconds: float = 0.0
    # The model's time (``indexer.stages``): loading weights, encoding, and waiting for input after its first
    # (the CPU stages fell behind) or for the writer (writes between passes, or too far behind).
    model_load_seconds: float = 0.0
    encode_seconds: float = 0.0
    model_input_wait_seconds: float = 0.0
    model_write_wait_seconds: float = 0.0

    def _count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def documents(self) -> int:
        """Documents written by this run (new or changed)."""
        return self._count("ok")

    @property
    def unchanged(self) -> int:
        return self._count("unchanged")

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "skipped"]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def busy(self) -> list[FileResult]:
        """Documents another live writer was changing all the while this run could wait for them."""
        return [f for f in self.files if f.status == "busy"]

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status == "ok")

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.files if f.status == "ok")

    def summary(self) -> str:
        text = (
            f"{self.documents} documents ingested ({self.chunks} chunks, {self.tokens} tokens), "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped, {len(self.failed)} failed"
        )
        if self.busy:
            text += f", {len(self.busy)} busy (another writer was changing them)"
        if self.pruned:
            text += f", {len(self.pruned)} pruned"
        if self.repaired:
            text += f", {self.repaired} repaired from an interrupted run"
        if self.encode_seconds:
            text += (
                f"; model {self.encode_seconds:.1f}s encoding, waited {self.model_input_wait_seconds:.1f}s "
                f"for input and {self.model_write_wait_seconds:.1f}s for writes"
            )
        return f"{text}; collection {self.collection!r}, {self.seconds:.1f}s"

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "documents": self.documents,
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "busy": len(self.busy),
            "chunks": self.chunks,
            "tokens": self.tokens,
            "pruned": self.pruned,
            "repaired": self.repaired,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "model_load_seconds": round(self.model_load_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "model_input_wait_seconds": round(self.model_input_wait_seconds, 3),
            "model_write_wait_seconds": round(self.model_write_wait_seconds, 3),
            "files": [
                {
                    "source": f.source,
                    "status": f.status,
                    "doc_id": f.doc_id,
                    "chunks": f.chunks,
                    "tokens": f.tokens,
                    "seconds": round(f.seconds, 3),
                    "error": f.error,
                }
                for f in self.files
            ],
        }


class IngestStopped(StoreError):
    """The store failed for good in the middle of a run; ``report`` says what was done before."""

    def __init__(self, message: str, report: IngestReport) -> None:
        super().__init__(message)
        self.report = report

    @classmethod
    def by_store(cls, error: StoreError, report: IngestReport) -> IngestStopped:
        """The run stopped because the store failed for good: what was complete is kept."""
        return cls(
            f"the store failed and the run stopped: {error}. What was complete is kept; run the same command "
            "again to finish",
            report,
        )
