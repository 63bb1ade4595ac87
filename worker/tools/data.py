"""The data tools the agent calls: search, retrievers, collections, documents, intent.

Each tool checks its inputs against the catalogue's parameters (``dataplane/catalogue.py``),
works through the data plane and the retrieval engine, and turns the API's own refusals
(not found, invalid stage, …) into ``ToolError``s the agent reports. Confirmation of write
tools happens before they are called, not here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from dataplane.catalogue import BY_NAME
from dataplane.retrieval import Engine
from dataplane.service import DataPlane
from dataplane.stages import render, validate
from intent import classify
from shared import keys
from shared.errors import ApiError
from shared.ids import now_ms
from shared.models import IntentClassification
from worker.tools.base import RetrieverRun, Tool, ToolContext, ToolError, ToolOutcome

I = TypeVar("I")  # noqa: E741 - the input struct of one tool
Limit = Annotated[int, Meta(ge=1, le=100)]


class _Input(msgspec.Struct, forbid_unknown_fields=True):
    pass


class SmartSearch(_Input):
    query: Annotated[str, Meta(min_length=1)]
    limit: Limit = 5


class ExecuteRetriever(_Input):
    retriever_id: str
    inputs: dict[str, Any] = {}
    limit: Limit = 5


class ExecuteAdhoc(_Input):
    collection_identifiers: Annotated[list[str], Meta(min_length=1)]
    query: str | None = None
    stages: list[dict[str, Any]] | None = None
    limit: Limit = 5


class Query(_Input):
    query: Annotated[str, Meta(min_length=1)]


class Nothing(_Input):
    pass


class DocumentRef(_Input):
    collection_identifier: str
    document_id: str


class UserRequest(_Input):
    user_request: Annotated[str, Meta(min_length=1)]


class NewCollection(_Input):
    collection_name: str
    description: str | None = None


class CollectionRef(_Input):
    collection_identifier: str


def tool(input_type: type[I]) -> Callable[[Callable[[DataPlane, ToolContext, I], Awaitable[ToolOutcome]]], Tool]:
    """Checks the inputs, hands the body a data plane, and makes API errors agent-visible."""
    def wrap(body: Callable[[DataPlane, ToolContext, I], Awaitable[ToolOutcome]]) -> Tool:
        async def run(ctx: ToolContext, inputs: dict[str, Any]) -> ToolOutcome:
            try:
                args = msgspec.convert(inputs or {}, input_type)
            except msgspec.ValidationError as exc:
                raise ToolError(f"Invalid input: {exc}") from None
            try:
                return await body(DataPlane(ctx.redis), ctx, args)
            except ApiError as exc:
                raise ToolError(exc.message) from exc

        run.__name__ = run.__qualname__ = body.__name__
        run.__doc__ = body.__doc__
        return run

    return wrap


def _run(result: dict[str, Any], started: float, retriever_id: str | None, message: str) -> RetrieverRun:
    return RetrieverRun(execution_id=result["execution_id"], retriever_id=retriever_id,
                        is_adhoc=retriever_id is None, documents_returned=len(result["documents"]),
                        latency_ms=round((time.perf_counter() - started) * 1000, 3), message=message)


@tool(SmartSearch)
async def smart_search(dp: DataPlane, ctx: ToolContext, args: SmartSearch) -> ToolOutcome:
    """BM25 over every text field of every collection in the namespace."""
    cols = await dp.list_collections(ctx.namespace_id)
    if not cols:
        return ToolOutcome({"query": args.query, "collections_searched": [], "documents": [], "total": 0,
                            "message": "This namespace has no collections yet."})
    started = time.perf_counter()
    stages = [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": {"query": args.query}}}]
    result = await Engine(dp).execute(ctx.namespace_id, [c.collection_id for c in cols], stages, limit=args.limit)
    total = result["pagination"]["total"]
    output = {**result, "query": args.query, "collections_searched": [c.collection_name for c in cols]}
    message = f"smart_search over {len(cols)} collection(s): {total} match(es) for {args.query!r}"
    # An ad-hoc search: hand back the exact pipeline, which saved as a retriever returns the same documents.
    config = {"collection_identifiers": [c.collection_id for c in cols], "stages": _with_limit(stages, args.limit)}
    return ToolOutcome(output, [_run(result, started, None, message)], pipeline_config=config)


@tool(ExecuteRetriever)
async def execute_retriever(dp: DataPlane, ctx: ToolContext, args: ExecuteRetriever) -> ToolOutcome:
    ret = await dp.get_retriever(ctx.namespace_id, args.retriever_id)
    started = time.perf_counter()
    result = await Engine(dp).execute(ctx.namespace_id, ret.collection_identifiers, ret.stages, inputs=args.inputs,
                                      input_schema=ret.input_schema, limit=args.limit,
                                      retriever_id=ret.retriever_id)
    message = f"Retriever {ret.retriever_name!r} returned {len(result['documents'])} document(s)"
    return ToolOutcome(result, [_run(result, started, ret.retriever_id, message)])


def _with_limit(stages: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Ends the pipeline with a limit of ``n``, so that the saved pipeline returns the same
    documents whatever page size it is later executed with."""
    last = stages[-1]["config"]
    if last["stage_id"] == "limit" and last["parameters"].get("n", n + 1) <= n:
        return stages
    names = {s["stage_name"] for s in stages}
    name, i = "limit", 1
    while name in names:
        name, i = f"limit_{i}", i + 1
    return [*stages, {"stage_name": name, "config": {"stage_id": "limit", "parameters": {"n": n}}}]


@tool(ExecuteAdhoc)
async def execute_adhoc_retriever(dp: DataPlane, ctx: ToolContext, args: ExecuteAdhoc) -> ToolOutcome:
    """Runs stages (or a BM25 search for ``query``) and returns the exact pipeline it ran,
    with templates filled in, collections resolved to ids and the limit as a stage."""
    engine = Engine(dp)
    col_ids = [c.collection_id for c in await engine.resolve(ctx.namespace_id, args.collection_identifiers)]
    if args.stages:
        inputs = {"query": args.query} if args.query is not None else {}
        stages = [{**s, "config": {**s["config"], "parameters": render(s["config"]["parameters"], inputs, i,
                                                                      s["stage_name"], s["config"]["stage_id"])}}
                  for i, s in enumerate(validate(args.stages))]
    elif args.query and args.query.strip():
        fields = await engine.text_fields(ctx.namespace_id, col_ids)
        params: dict[str, Any] = {"query": args.query, **({"fields": fields} if fields else {})}
        stages = [{"stage_name": "search", "config": {"stage_id": "bm25_search", "parameters": params}}]
    else:
        raise ToolError("Give a query or stages to run")
    stages = _with_limit(stages, args.limit)
    started = time.perf_counter()
    result = await engine.execute(ctx.namespace_id, col_ids, stages, limit=args.limit)
    message = f"Ad-hoc pipeline of {len(stages)} stage(s) returned {len(result['documents'])} document(s)"
    return ToolOutcome(result, [_run(result, started, None, message)],
                       pipeline_config={"collection_identifiers": col_ids, "stages": stages})


def _retriever_summary(ret: Any) -> dict[str, Any]:
    return {"retriever_id": ret.retriever_id, "retriever_name": ret.retriever_name,
            "description": ret.description, "collection_identifiers": ret.collection_identifiers,
            "stages": [f"{s['stage_name']} ({s['config']['stage_id']})" for s in ret.stages],
            "input_schema": ret.input_schema}


@tool(Query)
async def search_retrievers(dp: DataPlane, ctx: ToolContext, args: Query) -> ToolOutcome:
    found = await dp.search_retrievers(ctx.namespace_id, args.query)
    results = [{**_retriever_summary(r), "match_score": score} for score, r in found]
    return ToolOutcome({"query": args.query, "results": results, "total": len(results)})


@tool(Nothing)
async def list_retrievers(dp: DataPlane, ctx: ToolContext, args: Nothing) -> ToolOutcome:
    results = [_retriever_summary(r) for r in await dp.list_retrievers(ctx.namespace_id)]
    return ToolOutcome({"results": results, "total": len(results)})


@tool(Nothing)
async def list_collections(dp: DataPlane, ctx: ToolContext, args: Nothing) -> ToolOutcome:
    cols = await dp.list_collections(ctx.namespace_id)
    return ToolOutcome({"results": msgspec.to_builtins(cols), "total": len(cols)})


@tool(DocumentRef)
async def get_document(dp: DataPlane, ctx: ToolContext, args: DocumentRef) -> ToolOutcome:
    doc = await dp.get_document(ctx.namespace_id, args.collection_identifier, args.document_id)
    return ToolOutcome(doc.view())


@tool(UserRequest)
async def detect_intent(dp: DataPlane, ctx: ToolContext, args: UserRequest) -> ToolOutcome:
    c = await asyncio.to_thread(classify, args.user_request)  # CPU-bound: off the event loop
    suitable = await dp.suitable_collections(ctx.namespace_id, args.user_request)
    return ToolOutcome(msgspec.to_builtins(IntentClassification(
        intent=c.intent, confidence=c.confidence, reasoning=c.reasoning,  # type: ignore[arg-type]
        recommended_action=c.recommended_action, clarification_needed=c.clarification_needed,
        suitable_collections=suitable, keywords_found=c.keywords)))


@tool(NewCollection)
async def create_collection(dp: DataPlane, ctx: ToolContext, args: NewCollection) -> ToolOutcome:
    await _session_open(ctx)
    col = await dp.create_collection(ctx.namespace_id, args.collection_name, args.description)
    return ToolOutcome(msgspec.to_builtins(col.view(0)))


@tool(CollectionRef)
async def delete_collection(dp: DataPlane, ctx: ToolContext, args: CollectionRef) -> ToolOutcome:
    await _session_open(ctx)
    col, removed = await dp.delete_collection(ctx.namespace_id, args.collection_identifier)
    return ToolOutcome({"collection_id": col.collection_id, "collection_name": col.collection_name,
                        "deleted": True, "documents_deleted": removed})


async def _session_open(ctx: ToolContext) -> None:
    """Writes happen only for a live session: the gateway refuses a confirmation for a terminated
    one (issue 15.6), and this closes the window between that check and the run."""
    status, expires = await ctx.redis.hmget(keys.session(ctx.session_id), ["status", "expires_ms"])
    if status == b"terminated" or (expires is not None and int(expires) <= now_ms()):
        raise ToolError("the session is terminated; nothing was changed")


TOOLS: dict[str, Tool] = {
    "smart_search": smart_search,
    "execute_retriever": execute_retriever,
    "execute_adhoc_retriever": execute_adhoc_retriever,
    "search_retrievers": search_retrievers,
    "list_retrievers": list_retrievers,
    "list_collections": list_collections,
    "get_document": get_document,
    "detect_intent": detect_intent,
    "create_collection": create_collection,
    "delete_collection": delete_collection,
}
if set(TOOLS) != set(BY_NAME):  # the catalogue is the contract: fail at import, not mid-conversation
    raise RuntimeError(f"tools and catalogue differ: {sorted(set(TOOLS) ^ set(BY_NAME))}")
