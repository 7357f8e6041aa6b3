"""``retriever serve``: the HTTP retrieval service, a thin FastAPI layer over AsyncRetriever and the pipeline."""

from retriever.service.app import create_app, open_for_service, serve

__all__ = ["create_app", "open_for_service", "serve"]
