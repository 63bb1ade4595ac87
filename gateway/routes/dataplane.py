"""Data-plane routes: collections, their documents, and retrievers (saved and ad hoc).

Storage is ``dataplane/service.py``; the execute routes run the retrieval engine in-process
(``dataplane/retrieval`` used as a library): a search is a read over cached indexes, with nothing
to queue or stream, so a round trip through a worker would only add latency.
"""

from __future__ import annotations

from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dataplane.models import (
    AddDocumentRequest,
    AddDocumentsRequest,
    AdhocExecuteRequest,
    CreateCollectionRequest,
    CreateRetrieverRequest,
    ExecuteRetrieverRequest,
    ListCollectionsRequest,
    ListRetrieversRequest,
)
from dataplane.retrieval import Engine
from dataplane.service import DataPlane
from gateway.auth import authenticate
from gateway.bodies import parse, read_body
from gateway.context import services
from gateway.routes.sessions import json

T = TypeVar("T")
DEFAULT_LIST_LIMIT = 100


async def _setup(request: Request) -> tuple[str, DataPlane]:
    caller = await authenticate(request)
    return caller.namespace_id, DataPlane(services(request).redis)


async def _body(request: Request, type_: type[T], optional: bool = False) -> T:
    return parse(await read_body(request, services(request).settings.max_body_bytes), type_, optional=optional)


def _matches(search: str | None, case_sensitive: bool | None, *texts: str | None) -> bool:
    if not search:
        return True
    if case_sensitive:
        return any(search in t for t in texts if t)
    return any(search.lower() in t.lower() for t in texts if t)


def _page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    window = items[offset: offset + limit]
    return {"results": window, "total": len(items),
            "pagination": {"method": "offset", "limit": limit, "offset": offset, "returned": len(window),
                           "total": len(items), "has_next": offset + limit < len(items)}}


# Collections


async def create_collection(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, CreateCollectionRequest)
    col = await dp.create_collection(ns_id, req.collection_name, req.description, req.metadata)
    return json(col.view(0))


async def list_collections(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, ListCollectionsRequest, optional=True)
    cols = [c for c in await dp.list_collections(ns_id)
            if _matches(req.search, req.case_sensitive, c.collection_id, c.collection_name, c.description)]
    limit = req.limit or req.page_size or DEFAULT_LIST_LIMIT
    offset = req.offset if req.offset is not None else ((req.page or 1) - 1) * limit
    return json(_page(cols, limit, offset))


async def get_collection(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    col = await dp.get_collection(ns_id, request.path_params["collection_identifier"])
    count = await dp.count_documents(ns_id, col.collection_id)
    return json(col.view(count))


async def delete_collection(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    col, removed = await dp.delete_collection(ns_id, request.path_params["collection_identifier"])
    return json({"collection_id": col.collection_id, "collection_name": col.collection_name, "deleted": True,
                 "documents_deleted": removed})


# Documents


async def add_document(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, AddDocumentRequest)
    [doc] = await dp.add_documents(ns_id, request.path_params["collection_identifier"], [req])
    return json(doc.view())


async def add_documents(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, AddDocumentsRequest)
    docs = await dp.add_documents(ns_id, request.path_params["collection_identifier"], req.documents)
    return json({"collection_id": docs[0].collection_id, "documents": [d.view() for d in docs],
                 "total": len(docs)})


async def count_documents(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    col = await dp.get_collection(ns_id, request.path_params["collection_identifier"])
    return json({"collection_id": col.collection_id, "count": await dp.count_documents(ns_id, col.collection_id)})


async def get_document(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    p = request.path_params
    return json((await dp.get_document(ns_id, p["collection_identifier"], p["document_id"])).view())


async def delete_document(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    p = request.path_params
    doc = await dp.delete_document(ns_id, p["collection_identifier"], p["document_id"])
    return json({"document_id": doc.document_id, "collection_id": doc.collection_id, "deleted": True})


# Retrievers


async def create_retriever(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, CreateRetrieverRequest)
    ret = await dp.create_retriever(ns_id, req.retriever_name, req.stages, req.collection_identifiers,
                                    req.description, req.input_schema, req.tags, req.metadata)
    return json(ret.view())


async def list_retrievers(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, ListRetrieversRequest, optional=True)
    rets = [r for r in await dp.list_retrievers(ns_id)
            if _matches(req.search, req.case_sensitive, r.retriever_id, r.retriever_name, r.description)]
    return json({"results": [r.view() for r in rets], "total": len(rets)})


async def get_retriever(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    return json((await dp.get_retriever(ns_id, request.path_params["retriever_id"])).view())


async def delete_retriever(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    ret = await dp.delete_retriever(ns_id, request.path_params["retriever_id"])
    return json({"retriever_id": ret.retriever_id, "retriever_name": ret.retriever_name, "deleted": True})


async def execute_retriever(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, ExecuteRetrieverRequest, optional=True)
    limit, offset = req.page()
    ret = await dp.get_retriever(ns_id, request.path_params["retriever_id"])
    return json(await Engine(dp).execute(ns_id, ret.collection_identifiers, ret.stages, inputs=req.inputs,
                                         input_schema=ret.input_schema, filters=req.filters, limit=limit,
                                         offset=offset, retriever_id=ret.retriever_id))


async def execute_adhoc(request: Request) -> Response:
    ns_id, dp = await _setup(request)
    req = await _body(request, AdhocExecuteRequest)
    limit, offset = req.page()
    return json(await Engine(dp).execute(ns_id, req.collection_identifiers, req.stages, inputs=req.inputs,
                                         input_schema=req.input_schema, filters=req.filters, limit=limit,
                                         offset=offset))


_COL = "/v1/collections/{collection_identifier}"
ROUTES = [
    Route("/v1/collections", create_collection, methods=["POST"]),
    Route("/v1/collections/list", list_collections, methods=["POST"]),
    Route(_COL, get_collection, methods=["GET"]),
    Route(_COL, delete_collection, methods=["DELETE"]),
    Route(_COL + "/documents", add_document, methods=["POST"]),
    Route(_COL + "/documents/batch", add_documents, methods=["POST"]),
    # before /documents/{document_id}, or "count" would be taken for a document id
    Route(_COL + "/documents/count", count_documents, methods=["GET"]),
    Route(_COL + "/documents/{document_id}", get_document, methods=["GET"]),
    Route(_COL + "/documents/{document_id}", delete_document, methods=["DELETE"]),
    Route("/v1/retrievers", create_retriever, methods=["POST"]),
    Route("/v1/retrievers/list", list_retrievers, methods=["POST"]),
    Route("/v1/retrievers/execute", execute_adhoc, methods=["POST"]),
    Route("/v1/retrievers/{retriever_id}", get_retriever, methods=["GET"]),
    Route("/v1/retrievers/{retriever_id}", delete_retriever, methods=["DELETE"]),
    Route("/v1/retrievers/{retriever_id}/execute", execute_retriever, methods=["POST"]),
]
