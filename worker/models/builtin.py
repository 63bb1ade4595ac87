"""The built-in model: deterministic, no network. The default, and what tests use.

It plans tool calls from the intent (first step) and composes a grounded answer from the tool
outputs, citing document ids (second step). Same input, same events: which is what lets a
retry continue a dead attempt's answer exactly. ``token_delay_ms`` paces the tokens so demos
and tests can interrupt an answer in the middle; ``first_token_delay_ms`` delays each step's
first output, like a real model's time to first token (the bench paces answers with both).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

from worker import offload
from worker.models.base import StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage

_PIECE = re.compile(r"\S+\s*|\s+")


def call_id(message_id: str, n: int) -> str:
    """Deterministic per message and position, so a retry finds the recorded result."""
    return "run_" + hashlib.sha256(f"{message_id}:{n}".encode()).hexdigest()[:16]


def pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


class BuiltinModel:
    def __init__(self, token_delay_ms: int = 0, first_token_delay_ms: int = 0) -> None:
        self.token_delay_s = token_delay_ms / 1000
        self.first_token_delay_s = first_token_delay_ms / 1000

    async def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        if self.first_token_delay_s:  # every call of a real model waits for its first token
            await asyncio.sleep(self.first_token_delay_s)
        if not turn.reports:
            planned = await offload.by_length(turn.content, self.plan, turn)  # regexes over the whole content
            if planned:
                for use in planned:
                    yield use
                return
        text = self.answer(turn)
        out = pieces(text)
        for i, piece in enumerate(out):
            if self.token_delay_s and i:
                await asyncio.sleep(self.token_delay_s)
            yield TextDelta(piece)
        yield Usage(input_tokens=len(turn.content.split()), output_tokens=len(out))

    def plan(self, turn: Turn) -> list[ToolUse]:
        wanted: list[tuple[str, dict[str, Any]]] = []
        if turn.intent == "data_browse":
            wanted.append(("list_collections", {}))
            if "retriever" in turn.content.lower():
                wanted.append(("list_retrievers", {}))
        elif turn.intent == "retriever_search":
            wanted.append(("list_collections", {}))
            scope = _scope(turn.content)
            saved = _named(_USING_RETRIEVER, turn.content)
            if saved:  # a saved retriever, by name or id, with the rest of the request as its query
                wanted.append(("execute_retriever", {"retriever_id": saved[0], "inputs": {"query": saved[1]},
                                                     "limit": 5}))
            elif scope:  # an ad-hoc pipeline over the named collection
                wanted.append(("execute_adhoc_retriever", {"collection_identifiers": [scope[0]],
                                                           "query": scope[1], "limit": 5}))
            else:
                wanted.append(("smart_search", {"query": turn.content, "limit": 5}))
        elif turn.intent == "collection_management":
            name = _collection_name(turn.content)
            if name and re.search(r"\b(delete|remove|drop)\b", turn.content, re.I):
                wanted.append(("delete_collection", {"collection_identifier": name}))
            elif name:
                wanted.append(("create_collection", {"collection_name": name,
                                                     "description": f"Created from chat: {_clip(turn.content, 60)}"}))
            else:
                wanted.append(("list_collections", {}))
        elif turn.intent == "pipeline_setup":
            wanted.append(("detect_intent", {"user_request": turn.content}))
            wanted.append(("list_collections", {}))
        allowed = set(turn.tools)
        return [ToolUse(call_id(turn.message_id, i), name, inputs)
                for i, (name, inputs) in enumerate(wanted) if name in allowed]

    def answer(self, turn: Turn) -> str:
        if not turn.reports:
            if turn.intent == "conversation":
                parts = ["Hello! I can search and browse the data in this namespace. What would you like to find?"]
            else:
                parts = [f"I could not use a tool for \"{_clip(turn.content)}\" in this session, "
                         "so I have no data to ground an answer on."]
        else:
            parts = [_describe(r) for r in turn.reports]
        remembered = (turn.memory or {}).get("remembered") or []
        if remembered:
            parts.append(f"(Remembering {len(remembered)} earlier exchange(s) you rated helpful.)")
        return " ".join(p for p in parts if p)


# "... in the X collection" / "... in collection X": the scope of an ad-hoc pipeline. No pattern
# starts with a quantifier: under ``.search()`` a leading ``\s*`` is retried from every position
# of a whitespace run, which is quadratic in its length (issue 15.1). The whitespace before the
# phrase is dropped by ``_named`` instead.
_IN_COLLECTION = (re.compile(r"\bin\s+(?:the\s+)?[\"']?([A-Za-z0-9][\w.-]*)[\"']?\s+collection\b", re.I),
                  re.compile(r"\bin\s+(?:the\s+)?collection\s+[\"']?([A-Za-z0-9][\w.-]*)[\"']?", re.I))


_USING_RETRIEVER = (re.compile(r"\b(?:with|using)\s+(?:the\s+)?[\"']?([A-Za-z0-9][\w.-]*)[\"']?\s+retriever\b", re.I),
                    re.compile(r"\b(?:with|using)\s+(?:the\s+)?retriever\s+[\"']?([A-Za-z0-9][\w.-]*)[\"']?", re.I))


def _named(patterns: tuple[re.Pattern[str], ...], text: str) -> tuple[str, str] | None:
    """(name, the request without the phrase naming it), if a pattern finds one."""
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return m.group(1), (text[:m.start()].rstrip() + text[m.end():]).strip()
    return None


def _scope(text: str) -> tuple[str, str] | None:
    """(collection, the request without the scope phrase), if the request names one."""
    return _named(_IN_COLLECTION, text)


_NAMED = re.compile(r"\b(?:named|called)\s+[\"']?([A-Za-z0-9][\w.-]*)", re.I)
_AFTER_COLLECTION = re.compile(r"\bcollection\s+[\"']?([A-Za-z0-9][\w.-]*)", re.I)
_NOT_NAMES = {"named", "called", "for", "with", "a", "the", "of", "to", "please"}


def _collection_name(text: str) -> str | None:
    """The name in "... named X" / "... called X", else "collection X"."""
    for pattern in (_NAMED, _AFTER_COLLECTION):
        for m in pattern.finditer(text):
            if m.group(1).lower() not in _NOT_NAMES:
                return m.group(1).rstrip(".")
    return None


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _describe(r: ToolReport) -> str:
    if not r.success:
        if isinstance(r.output, dict) and r.output.get("approved") is False:
            return f"I did not run {r.name}: you denied it, so nothing was changed."
        return f"The {r.name} tool failed: {r.output}."
    out = r.output if isinstance(r.output, dict) else {}
    if r.name == "list_collections":
        cols = out.get("collections") or out.get("results") or []
        if not cols:
            return "There are no collections in this namespace yet."
        names = ", ".join(f"{c.get('collection_name')} ({c.get('document_count', 0)} documents)" for c in cols[:10])
        return f"This namespace has {len(cols)} collection(s): {names}."
    if r.name == "list_retrievers":
        rets = out.get("retrievers") or out.get("results") or []
        return f"There are {len(rets)} saved retriever(s)" + (
            ": " + ", ".join(str(x.get("retriever_name")) for x in rets[:10]) + "." if rets else ".")
    if r.name in ("smart_search", "execute_retriever", "execute_adhoc_retriever"):
        docs = out.get("documents") or []
        if not docs:
            return f"No documents matched \"{_clip(str(r.inputs.get('query', '')))}\"."
        lines = []
        for d in docs[:5]:
            meta = d.get("metadata") or {}
            title = meta.get("title") or meta.get("name") or _clip(str(meta.get("body", "")), 60) or d.get("document_id")
            lines.append(f"\"{title}\" [{d.get('document_id')}]")
        return f"I found {len(docs)} matching document(s); the most relevant are " + "; ".join(lines) + "."
    if r.name in ("create_collection", "delete_collection"):
        verb = "Created" if r.name == "create_collection" else "Deleted"
        col = out.get("collection") or out
        return f"{verb} the collection {col.get('collection_name', '')} ({col.get('collection_id', '')})."
    if r.name == "detect_intent":
        return (f"Your request reads as {out.get('intent', 'unclear')} "
                f"(recommended next step: {out.get('recommended_action', 'clarify')}).")
    return f"{r.name} returned {_clip(str(r.output), 120)}."
