"""A LangChain ``BaseRetriever`` over ``Retriever`` (and ``AsyncRetriever`` for ``ainvoke``)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retriever.aio import AsyncRetriever
from retriever.api import Retriever, SearchHit, SearchOptions

# Keys of ``Document.metadata`` that come from the hit; the chunk's user metadata cannot overwrite them.
HIT_KEYS = ("id", "score", "doc_id", "source", "pages", "page", "chunk_index", "start", "end", "headings", "group")


def to_document(hit: SearchHit) -> Document:
    """A hit as a LangChain document: the chunk text, with its place and score as metadata."""
    metadata: dict[str, Any] = dict(hit.metadata)
    metadata.update(
        id=hit.id,
        score=hit.score,
        doc_id=hit.doc_id,
        source=hit.source,
        pages=list(hit.pages),
        page=hit.page,
        chunk_index=hit.chunk_index,
        start=hit.start,
        end=hit.end,
        headings=list(hit.headings),
        group=hit.group,
    )
    return Document(id=hit.id, page_content=hit.text, metadata=metadata)


class M3Retriever(BaseRetriever):
    """``retriever.invoke("query")`` -> ``list[Document]``; ``ainvoke`` uses the async API when given one.

    With ``async_retriever`` (made from the same ``retriever``), sync and async calls may run at once
    from any threads; without it, use one thread, as with ``Retriever`` itself.

    >>> lc = M3Retriever(retriever=Retriever(settings), k=5, mode="hybrid_colbert")
    >>> docs = lc.invoke("late delivery penalty")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    async_retriever: AsyncRetriever | None = None  # without it, ainvoke runs the sync search in a thread
    k: int | None = None  # hits per query, or groups with group_by (default from config)
    mode: str | None = None
    filter: Any = None
    group_by: str | None = None  # e.g. "doc_id": k different documents (see SearchOptions)
    group_size: int | None = None
    diversity: float | None = None  # MMR after the mode
    tenant: str | None = None  # search only this tenant's documents (README, Tenants)

    def _sync(self) -> Retriever:
        return self.retriever if self.tenant is None else self.retriever.for_tenant(self.tenant)

    def _async(self) -> AsyncRetriever | None:
        ar = self.async_retriever
        return ar if ar is None or self.tenant is None else ar.for_tenant(self.tenant)

    def _options(self) -> SearchOptions:
        return SearchOptions(self.k, self.mode, self.filter, self.group_by, self.group_size, self.diversity)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        o, ar = self._options(), self._async()
        # With an async retriever, its locks make sync and async calls safe together.
        hits = ar.search_blocking(query, **_kwargs(o)) if ar is not None else self._sync().search(query, **_kwargs(o))
        return [to_document(h) for h in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        ar = self._async()
        if ar is None:
            return await super()._aget_relevant_documents(query, run_manager=run_manager)
        [hits] = await ar.search_planned([query], self._options())
        return [to_document(h) for h in hits]


def _kwargs(o: SearchOptions) -> dict[str, Any]:
    return {f: getattr(o, f) for f in SearchOptions.__dataclass_fields__}
