"""Hybrid retrieval over a BGE-M3 Qdrant collection: dense, sparse, fused, ColBERT-reranked."""

from retriever.api import Retriever, SearchHit
from retriever.query import SearchMode, build_request, parse_filter

__all__ = ["Retriever", "SearchHit", "SearchMode", "build_request", "parse_filter"]
