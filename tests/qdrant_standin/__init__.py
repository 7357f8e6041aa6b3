"""A Qdrant server on loopback (REST and gRPC) answering from qdrant-client's local engine; see ``core``."""

from tests.qdrant_standin.core import MB32, Call, Fault, QdrantStandIn, ServerError

__all__ = ["MB32", "Call", "Fault", "QdrantStandIn", "ServerError"]
