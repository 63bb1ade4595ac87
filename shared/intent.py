"""The intent classifier: keyword analysis, pure and deterministic.

One classifier, two vocabularies: ``IntentClassification`` (execution / setup / ambiguous) for
``POST /intent/detect``, and the SSE ``intent`` event's (``retriever_search`` / ``data_browse``
/ ``collection_management`` / ``conversation``, with a category).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SETUP = ("setup", "set up", "create", "configure", "index", "ingest", "upload", "pipeline",
         "build", "add collection", "new collection", "install", "extractor", "import", "delete",
         "remove", "drop")
EXECUTION = ("search", "find", "look for", "look up", "show me", "retrieve", "query", "which",
             "what", "who", "where", "when", "list", "get", "fetch", "how many", "about", "tell me",
             "documents", "results", "explain", "summarize", "compare")
NEUTRAL = ("video", "videos", "image", "images", "document", "collection", "collections", "data",
           "faces", "text", "audio", "retriever", "retrievers")
GREETING = ("hello", "hi", "hey", "thanks", "thank you", "good morning", "how are you")
BROWSE = ("list", "collections", "what collections", "which collections", "retrievers", "show collections")
MANAGE = ("create", "delete", "remove", "drop", "new collection")

_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class Classification:
    intent: str  # execution | setup | ambiguous
    confidence: float
    reasoning: str
    recommended_action: str
    clarification_needed: bool
    keywords: dict[str, list[str]]
    # the SSE event's vocabulary
    event_intent: str
    event_category: str


def _found(text: str, words: tuple[str, ...]) -> list[str]:
    padded = " " + " ".join(_WORD.findall(text.lower())) + " "
    return [w for w in words if f" {w} " in padded]


def classify(text: str) -> Classification:
    setup = _found(text, SETUP)
    execution = _found(text, EXECUTION)
    neutral = _found(text, NEUTRAL)
    greeting = _found(text, GREETING)
    kw = {"setup_keywords": setup, "execution_keywords": execution, "neutral_keywords": neutral}
    s, e = len(setup), len(execution)
    if s > e:
        intent, action = "setup", "setup_pipeline"
        confidence = min(0.95, 0.6 + 0.1 * (s - e))
        reasoning = f"setup keywords ({', '.join(setup)}) outweigh execution keywords"
    elif e > s:
        intent, action = "execution", "execute_retriever"
        confidence = min(0.95, 0.6 + 0.1 * (e - s))
        reasoning = f"execution keywords ({', '.join(execution)}) outweigh setup keywords"
    else:
        intent, action = "ambiguous", "ask_clarification"
        confidence = 0.5 if s else 0.3
        reasoning = "no clear setup or execution keywords" if not s else "setup and execution keywords tie"
    if greeting and not (s or e or neutral):
        event_intent, category = "conversation", "general"
    elif _found(text, MANAGE) and intent == "setup":
        event_intent, category = "collection_management", "write"
    elif _found(text, BROWSE) and not _found(text, ("search", "find", "about")):
        event_intent, category = "data_browse", "data"
    elif intent == "setup":
        event_intent, category = "pipeline_setup", "setup"
    else:
        event_intent, category = "retriever_search", "retriever"
    return Classification(intent, round(confidence, 2), reasoning, action, intent == "ambiguous", kw,
                          event_intent, category)
