"""The tool catalogue: what the agent may call, as the API lists it (``ToolInfo``).

A contract both sides share: the gateway lists it, the worker implements each entry
(``worker/tools/``). Write tools (create/update/delete) need the user's confirmation.
"""

from __future__ import annotations

from typing import Any

from shared.models import ToolInfo


def _tool(name: str, category: str, description: str, props: dict[str, Any],
          required: list[str] | None = None) -> ToolInfo:
    return ToolInfo(
        name=name,
        description=description,
        category=category,
        parameters={"type": "object", "properties": props, "required": required or [],
                    "additionalProperties": False},
        required_params=required or [],
        requires_confirmation=category in {"create", "update", "delete"},
    )


_S = {"type": "string"}
_QUERY = {"type": "string", "description": "What to look for, in plain words"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 100, "default": 5}
_COLL = {"type": "string", "description": "Collection name or col_ id"}

TOOLS: list[ToolInfo] = [
    _tool("smart_search", "search",
          "Full-text (BM25) search across the namespace's collections; picks the collections itself.",
          {"query": _QUERY, "limit": _LIMIT}, ["query"]),
    _tool("execute_retriever", "search", "Run a saved retriever (ret_ id or name) with inputs.",
          {"retriever_id": _S, "inputs": {"type": "object"}, "limit": _LIMIT}, ["retriever_id"]),
    _tool("execute_adhoc_retriever", "search",
          "Run an ad-hoc pipeline of stages over collections; emits the pipeline_config to save it.",
          {"collection_identifiers": {"type": "array", "items": _S}, "query": _QUERY,
           "stages": {"type": "array", "items": {"type": "object"}}, "limit": _LIMIT},
          ["collection_identifiers"]),
    _tool("search_retrievers", "read", "Find saved retrievers whose name or description matches.",
          {"query": _QUERY}, ["query"]),
    _tool("list_retrievers", "read", "List the namespace's saved retrievers.", {}),
    _tool("list_collections", "read", "List the namespace's collections with document counts.", {}),
    _tool("get_document", "read", "Fetch one document by id from a collection.",
          {"collection_identifier": _COLL, "document_id": _S}, ["collection_identifier", "document_id"]),
    _tool("detect_intent", "read", "Classify a request as execution, setup or ambiguous.",
          {"user_request": _S}, ["user_request"]),
    _tool("create_collection", "create", "Create a collection (asks for confirmation first).",
          {"collection_name": _S, "description": _S}, ["collection_name"]),
    _tool("delete_collection", "delete",
          "Delete a collection and its documents (asks for confirmation first).",
          {"collection_identifier": _COLL}, ["collection_identifier"]),
]

BY_NAME = {t.name: t for t in TOOLS}
CATEGORIES = sorted({t.category for t in TOOLS})


def allowed(available_tools: list[str] | None) -> set[str]:
    """``available_tools`` empty or absent means every tool."""
    return set(available_tools) & set(BY_NAME) if available_tools else set(BY_NAME)
