"""Hybrid retrieval over a BGE-M3 Qdrant collection: dense, sparse, fused, ColBERT-reranked."""

from retriever.aio import AsyncRetriever
from retriever.api import Retriever, SearchHit
from retriever.context import Context, build_context, token_counter
from retriever.query import SearchMode, build_request, parse_filter

__all__ = [
    "AsyncRetriever",
    "Context",
    "Retriever",
    "SearchHit",
    "SearchMode",
    "build_context",
    "build_request",
    "parse_filter",
    "token_counter",
]
