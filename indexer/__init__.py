"""Ingest documents into Qdrant with BGE-M3 dense, sparse and ColBERT vectors."""

__version__ = "0.1.0"
