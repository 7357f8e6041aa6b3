"""The service's MCP endpoint: search and context building as Model Context Protocol tools.

Served at ``/mcp`` on the same app (streamable HTTP, stateless, JSON answers) when ``service.mcp`` is on,
so the same outer layers apply to it: the API key, body limits, request ids and metrics. The tools
take the HTTP routes' bodies (``SearchRequest``, ``ContextRequest``: the same checks and limits) and run
through the same ``ServiceState`` methods as ``POST /search`` and ``POST /context``.

With tenant keys, the tools are scoped as the routes are: the request's key (and ``X-Tenant`` for an admin
key) names the tenant (``retriever.service.state.service_state``), checked twice: before the MCP server
sees the request (a refusal is the routes' 401, 403 or 422), and again by each tool call on the HTTP
request it came in (``ctx.request_context.request``), which then searches that tenant's view only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context  # a module global: the SDK finds the tools' context parameter by it
from pydantic import Field, ValidationError
from starlette.requests import Request

from indexer.config import Settings
from indexer.errors import IndexerError, StoreError
from indexer.modes import MAX_LIMIT, MAX_QUERY_CHARS
from retriever.service.guard import error_response
from retriever.service.routes import context_answer, search_options
from retriever.service.schemas import ContextRequest, SearchRequest
from retriever.service.state import ApiError, ServiceState, service_state

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mcp.server.mcpserver import MCPServer

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"

_FILTER = 'payload filter: {"doc_id": "a.pdf", "page": {"gte": 2}}, ["page>=2"], or Qdrant\'s {"must": [...]} syntax'
Query = Annotated[str, Field(description=f"what to search for (1 to {MAX_QUERY_CHARS} characters)")]
Limit = Annotated[int | None, Field(description=f"hits (or groups) to return, 1 to {MAX_LIMIT}; default from config")]
Mode = Annotated[
    str | None,
    Field(description="dense, sparse, hybrid, hybrid_dbsf, dense_colbert, hybrid_colbert or m3; default from config"),
]
Filter = Annotated[dict[str, Any] | list[str] | str | None, Field(description=_FILTER)]
GroupBy = Annotated[str | None, Field(description="results per document: group hits by this payload field (doc_id)")]
GroupSize = Annotated[int | None, Field(description="hits per group (default 1)")]
Diversity = Annotated[float | None, Field(description="MMR after the mode: 0 relevance only .. 1 difference only")]


def _arguments_error(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg'][:1].lower()}{err['msg'][1:]}"
        for err in e.errors()
    )


class _Routed:
    """An ASGI app that names its route in the scope (FastAPI does so only for its own routes): the metrics
    count MCP requests under ``/mcp``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.route: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = self.route
        if scope["type"] == "http":
            try:  # with tenant keys: a key that may not act for the tenant is refused here, as by a route
                service_state(Request(scope))
            except ApiError as e:
                await error_response(e.status, e.detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class McpEndpoint:
    """The MCP server over one app's ``ServiceState``: ``mount(app)`` adds ``/mcp``, ``running()`` serves it."""

    def __init__(self, settings: Settings) -> None:
        from mcp.server.mcpserver import MCPServer

        self.app: FastAPI | None = None
        # MCPServer calls logging.basicConfig (a rich handler on the root logger) unless the root has a
        # handler: the service's logging (``configure_logging``) or the embedding application's stays as it is.
        root = logging.getLogger()
        placeholder = None if root.handlers else logging.NullHandler()
        if placeholder is not None:
            root.addHandler(placeholder)
        try:
            self.server: MCPServer = MCPServer(
                name="m3-qdrant-rag",
                instructions=(
                    "Hybrid search (BGE-M3 dense, sparse and ColBERT vectors) over one document collection. "
                    "`search` returns ranked chunks with their source and pages; `context` returns a prompt-ready "
                    "text of merged passages with numbered citations within a token budget."
                ),
                version="0.1.0",
            )
        finally:
            if placeholder is not None:
                root.removeHandler(placeholder)
        self._add_tools()
        self.http = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,  # every call stands alone: no session state to keep or expire
            json_response=True,
            # DNS-rebinding protection (Host and Origin checks) when the service listens on loopback only
            host=settings.service.host,
            max_request_body_size=settings.service.max_json_bytes,
        )

    def mount(self, app: FastAPI) -> None:
        """Add ``/mcp`` to ``app``'s routes, inside its middleware (API key, limits, request ids, metrics)."""
        from starlette.routing import Route

        self.app = app
        for route in self.http.routes:
            if isinstance(route, Route) and route.path == MCP_PATH:
                routed = _Routed(route.endpoint)
                routed.route = Route(MCP_PATH, endpoint=routed)
                app.router.routes.append(routed.route)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield

    def _state(self, ctx: Context) -> ServiceState:
        """The state a tool call acts through: with tenant keys, the view of the tenant its HTTP request's
        key allows (as ``service_state`` gives the routes); a call without an HTTP request is refused."""
        from mcp.server.mcpserver.exceptions import ToolError

        assert self.app is not None, "mount the MCP endpoint on an app first"
        state: ServiceState = self.app.state.service
        if state.keys is None:
            return state
        request = ctx.request_context.request
        if not isinstance(request, Request):
            raise ToolError("this service has tenant keys: call its tools over HTTP, with a key")
        try:
            return service_state(request)
        except ApiError as e:
            raise ToolError(e.detail) from None

    def _add_tools(self) -> None:
        from mcp.server.mcpserver.exceptions import ToolError

        def body(model: type[SearchRequest], arguments: dict[str, Any]) -> Any:
            try:
                return model.model_validate({k: v for k, v in arguments.items() if v is not None})
            except ValidationError as e:
                raise ToolError(f"invalid arguments: {_arguments_error(e)}") from None

        def failed(state: ServiceState, e: IndexerError) -> ToolError:
            from retriever.service.app import SERVER_ERROR_DETAIL, status_for  # app imports this module

            status = status_for(e)
            if isinstance(e, StoreError):
                state.metrics.store_error(e)
            if status < 500:
                return ToolError(str(e))
            logger.error("%s in an MCP tool: %s", type(e).__name__, e, exc_info=e)
            return ToolError(SERVER_ERROR_DETAIL.get(status, "internal error (the details are in the service log)"))

        @self.server.tool(
            name="search",
            description="Search the collection: the best chunks for a query, each with score, text, source, "
            "pages and metadata.",
        )
        async def search(
            ctx: Context,
            query: Query,
            limit: Limit = None,
            mode: Mode = None,
            filter: Filter = None,
            group_by: GroupBy = None,
            group_size: GroupSize = None,
            diversity: Diversity = None,
        ) -> dict[str, Any]:
            options_given: dict[str, Any] = {"limit": limit, "mode": mode, "filter": filter, "group_by": group_by}
            options_given |= {"group_size": group_size, "diversity": diversity}
            request = body(SearchRequest, {"query": query, **options_given})
            state = self._state(ctx)
            options = search_options(request, state)
            try:
                [hits] = await state.search([request.query], options)
            except IndexerError as e:
                raise failed(state, e) from None
            return {"mode": state.mode_of(options).value, "hits": [h.as_dict() for h in hits]}

        @self.server.tool(
            name="context",
            description="Search, then build a prompt context: the best passages merged per document, with "
            "numbered citations [1], [2], ... within max_tokens tokens.",
        )
        async def context(
            ctx: Context,
            query: Query,
            max_tokens: Annotated[int, Field(description="token budget of the context text")] = 2000,
            limit: Limit = None,
            mode: Mode = None,
            filter: Filter = None,
            group_by: GroupBy = None,
            group_size: GroupSize = None,
            diversity: Diversity = None,
            expand: Annotated[
                Literal["none", "section", "neighbours"],
                Field(description="grow each passage to its whole section, or by neighbouring chunks"),
            ] = "none",
        ) -> dict[str, Any]:
            options_given: dict[str, Any] = {"limit": limit, "mode": mode, "filter": filter, "group_by": group_by}
            options_given |= {"group_size": group_size, "diversity": diversity}
            fields = {"query": query, "max_tokens": max_tokens, "expand": expand, **options_given}
            request = body(ContextRequest, fields)
            state = self._state(ctx)
            options = search_options(request, state)
            try:
                built = await state.context_for(request.query, options, request.max_tokens, request.expand)
            except IndexerError as e:
                raise failed(state, e) from None
            return context_answer(built)
