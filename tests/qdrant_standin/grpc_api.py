"""The stand-in's gRPC side: a real grpcio server with qdrant-client's generated service stubs."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

from tests.qdrant_standin.core import QdrantStandIn, ServerError


def add_services(standin: QdrantStandIn) -> grpc.Server:
    """A gRPC server (not yet bound) with Qdrant's three services answering from ``standin``."""
    # Qdrant's tonic services take messages of any size (``max_decoding_message_size(usize::MAX)`` in
    # src/tonic/mod.rs); grpcio's default is 4 MB.
    unlimited = [("grpc.max_receive_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[_Garbage(standin)], options=unlimited)
    pb.add_QdrantServicer_to_server(_Root(standin), server)
    pb.add_CollectionsServicer_to_server(_Collections(standin), server)
    pb.add_PointsServicer_to_server(_Points(standin), server)
    return server


_GRPC_OPS = {
    "/qdrant.Qdrant/HealthCheck": "health",
    "/qdrant.Collections/Get": "get",
    "/qdrant.Collections/CollectionExists": "exists",
    "/qdrant.Points/Count": "count",
    "/qdrant.Points/QueryBatch": "query_batch",
    "/qdrant.Points/QueryGroups": "query_groups",
    "/qdrant.Points/Upsert": "upsert",
}


class _Garbage(grpc.GenericRpcHandler):
    """Answers a call with bytes that are no message of the reply's type, where a test queued some."""

    def __init__(self, standin: QdrantStandIn) -> None:
        self.s = standin

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        queued = self.s.garbage.get(_GRPC_OPS.get(details.method, ""))
        if not queued:
            return None
        body = queued.pop(0)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: body)


def _grpc(standin: QdrantStandIn, op: str, request: Any, context: grpc.ServicerContext, **args: Any) -> Any:
    try:
        api_key = dict(context.invocation_metadata()).get("api-key")
        return standin.run(op, "grpc", request.ByteSize(), api_key, **args)
    except ServerError as e:
        if e.fault.trailing:
            context.set_trailing_metadata(e.fault.trailing)
        context.abort(e.fault.code, e.fault.message)


def _ordering(request: Any) -> str | None:
    if not request.HasField("ordering"):
        return None
    return pb.WriteOrderingType.Name(request.ordering.type).lower()


def _update(result: models.UpdateResult) -> Any:
    return pb.PointsOperationResponse(result=RestToGrpc.convert_update_result(result), time=0.0)


class _Root(pb.QdrantServicer):
    def __init__(self, standin: QdrantStandIn) -> None:
        self.s = standin

    def HealthCheck(self, request: Any, context: grpc.ServicerContext) -> Any:
        return RestToGrpc.convert_health_check_reply(_grpc(self.s, "health", request, context))


class _Collections(pb.CollectionsServicer):
    def __init__(self, standin: QdrantStandIn) -> None:
        self.s = standin

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        names = _grpc(self.s, "list", request, context)
        return pb.ListCollectionsResponse(collections=[pb.CollectionDescription(name=n) for n in names], time=0.0)

    def CollectionExists(self, request: Any, context: grpc.ServicerContext) -> Any:
        exists = _grpc(self.s, "exists", request, context, collection=request.collection_name)
        return pb.CollectionExistsResponse(result=pb.CollectionExists(exists=exists), time=0.0)

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        info = _grpc(self.s, "get", request, context, collection=request.collection_name)
        return pb.GetCollectionInfoResponse(result=RestToGrpc.convert_collection_info(info), time=0.0)

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        args: dict[str, Any] = {}
        if request.HasField("vectors_config"):
            args["vectors_config"] = GrpcToRest.convert_vectors_config(request.vectors_config)
        if request.HasField("sparse_vectors_config"):
            args["sparse_vectors_config"] = GrpcToRest.convert_sparse_vector_config(request.sparse_vectors_config)
        if request.HasField("optimizers_config"):
            args["optimizers_config"] = GrpcToRest.convert_optimizers_config_diff(request.optimizers_config)
        for key in ("shard_number", "replication_factor", "write_consistency_factor"):
            if request.HasField(key):
                args[key] = getattr(request, key)
        ok = _grpc(self.s, "create", request, context, collection=request.collection_name, **args)
        return pb.CollectionOperationResponse(result=ok, time=0.0)

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        ok = _grpc(self.s, "delete_collection", request, context, collection=request.collection_name)
        return pb.CollectionOperationResponse(result=ok, time=0.0)


class _Points(pb.PointsServicer):
    def __init__(self, standin: QdrantStandIn) -> None:
        self.s = standin

    def CreateFieldIndex(self, request: Any, context: grpc.ServicerContext) -> Any:
        schema = pb.FieldType.Name(request.field_type).removeprefix("FieldType").lower()
        params = request.field_index_params
        if params.HasField("keyword_index_params") and params.keyword_index_params.is_tenant:
            schema = "tenant"
        result = _grpc(
            self.s,
            "create_index",
            request,
            context,
            collection=request.collection_name,
            field_name=request.field_name,
            schema=schema,
            wait=request.wait,
            ordering=_ordering(request),
        )
        return _update(result)

    def Upsert(self, request: Any, context: grpc.ServicerContext) -> Any:
        points = [GrpcToRest.convert_point_struct(p) for p in request.points]
        result = _grpc(
            self.s,
            "upsert",
            request,
            context,
            collection=request.collection_name,
            points=points,
            wait=request.wait,
            ordering=_ordering(request),
        )
        return _update(result)

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        selector = GrpcToRest.convert_points_selector(request.points)
        result = _grpc(
            self.s,
            "delete",
            request,
            context,
            collection=request.collection_name,
            selector=selector,
            wait=request.wait,
            ordering=_ordering(request),
        )
        return _update(result)

    def QueryBatch(self, request: Any, context: grpc.ServicerContext) -> Any:
        searches = [GrpcToRest.convert_query_points(q) for q in request.query_points]
        responses = _grpc(
            self.s, "query_batch", request, context, collection=request.collection_name, searches=searches
        )
        return pb.QueryBatchResponse(
            result=[pb.BatchResult(result=[RestToGrpc.convert_scored_point(p) for p in r.points]) for r in responses],
            time=0.0,
        )

    def QueryGroups(self, request: Any, context: grpc.ServicerContext) -> Any:
        # The fields a groups request shares with a query request, read as one
        shared = pb.QueryPoints(collection_name=request.collection_name, prefetch=list(request.prefetch))
        for name in ("query", "using", "filter", "params", "score_threshold", "with_payload", "limit"):
            if request.HasField(name):
                value = getattr(request, name)
                if hasattr(value, "CopyFrom"):
                    getattr(shared, name).CopyFrom(value)
                else:
                    setattr(shared, name, value)
        result = _grpc(
            self.s,
            "query_groups",
            request,
            context,
            collection=request.collection_name,
            query=GrpcToRest.convert_query_points(shared),
            group_by=request.group_by,
            group_size=request.group_size if request.HasField("group_size") else 3,
        )
        return pb.QueryGroupsResponse(result=RestToGrpc.convert_groups_result(result), time=0.0)

    def Count(self, request: Any, context: grpc.ServicerContext) -> Any:
        flt = GrpcToRest.convert_filter(request.filter) if request.HasField("filter") else None
        result = _grpc(self.s, "count", request, context, collection=request.collection_name, filter=flt)
        return pb.CountResponse(result=RestToGrpc.convert_count_result(result), time=0.0)

    def Scroll(self, request: Any, context: grpc.ServicerContext) -> Any:
        records, offset = _grpc(
            self.s,
            "scroll",
            request,
            context,
            collection=request.collection_name,
            filter=GrpcToRest.convert_filter(request.filter) if request.HasField("filter") else None,
            limit=request.limit,
            offset=GrpcToRest.convert_point_id(request.offset) if request.HasField("offset") else None,
            with_vectors=GrpcToRest.convert_with_vectors_selector(request.with_vectors)
            if request.HasField("with_vectors")
            else False,
        )
        return pb.ScrollResponse(
            next_page_offset=RestToGrpc.convert_extended_point_id(offset) if offset is not None else None,
            result=[RestToGrpc.convert_retrieved_point(r) for r in records],
            time=0.0,
        )

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        records = _grpc(
            self.s,
            "retrieve",
            request,
            context,
            collection=request.collection_name,
            ids=[GrpcToRest.convert_point_id(i) for i in request.ids],
            with_vectors=GrpcToRest.convert_with_vectors_selector(request.with_vectors)
            if request.HasField("with_vectors")
            else False,
        )
        return pb.GetResponse(result=[RestToGrpc.convert_retrieved_point(r) for r in records], time=0.0)
