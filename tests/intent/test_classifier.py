"""The intent classifier against a labelled set of realistic requests, plus its invariants.

``intent_labelled.jsonl`` holds one request a line: ``{"text", "intent", "event_intent"}``. Labelling
conventions (the set was written before the classifier was measured on it):

* ``execution`` is work over data that already exists: content searches (``retriever_search``) and
  questions about what the namespace holds — collections, retrievers, counts, schemas
  (``data_browse``).
* ``setup`` changes the namespace: a direct command to create / delete / rename a collection
  (``collection_management``), or ingestion, extractors, retrievers, indexing and "how do I get
  started / make X searchable" (``pipeline_setup``). A mixed request is labelled by the action that
  must come first.
* ``ambiguous`` is chit-chat (``conversation``) or a vague request without a verb: a bare data type
  ("videos", "audio files") reads as ``data_browse``, a bare topic ("redis", "contracts") as
  ``retriever_search``.

Every third line (index % 3 == 2) is a held-out split that was not looked at while the classifier
was tuned; the rest is the tuning split. Run with ``-s`` to see the accuracy and confusion tables.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from intent import Classification, classify

SET = Path(__file__).with_name("intent_labelled.jsonl")
INTENTS = ("execution", "setup", "ambiguous")
EVENT_INTENTS = ("retriever_search", "data_browse", "collection_management", "pipeline_setup", "conversation")
CATEGORY = {"retriever_search": "retriever", "data_browse": "data", "collection_management": "write",
            "pipeline_setup": "setup", "conversation": "general"}

# What the classifier reached when this was written (printed with -s): intent 1.000 on the tuning
# split / 0.952 held-out (59/62), event_intent 1.000 / 0.952. The tuning split is fitted by
# construction, so the held-out figure is the honest one; the floor sits about 3 points (two
# requests) below it and applies to both splits, so a general regression fails.
# (Before the rewrite the keyword classifier scored intent 0.70 / 0.69, event_intent 0.63 / 0.68.)
FLOOR = {"intent": 0.92, "event_intent": 0.92}


def load() -> list[dict[str, str]]:
    rows = [json.loads(line) for line in SET.read_text().splitlines() if line.strip()]
    return rows


ROWS = load()
TUNE = [r for i, r in enumerate(ROWS) if i % 3 != 2]
HELD_OUT = [r for i, r in enumerate(ROWS) if i % 3 == 2]


def accuracy(rows: list[dict[str, str]], field: str) -> float:
    return sum(getattr(classify(r["text"]), field) == r[field] for r in rows) / len(rows)


def confusion(rows: list[dict[str, str]], field: str, labels: tuple[str, ...]) -> str:
    counts = Counter((r[field], getattr(classify(r["text"]), field)) for r in rows)
    width = max(len(x) for x in labels) + 2
    head = "true \\ predicted".ljust(width) + "".join(x[:12].rjust(13) for x in labels)
    lines = [head] + [t.ljust(width) + "".join(str(counts[(t, p)]).rjust(13) for p in labels) for t in labels]
    return "\n".join(lines)


def test_the_labelled_set_is_well_formed() -> None:
    assert len(ROWS) >= 150
    assert len({r["text"] for r in ROWS}) == len(ROWS)
    for r in ROWS:
        assert set(r) == {"text", "intent", "event_intent"} and r["text"].strip()
        assert r["intent"] in INTENTS and r["event_intent"] in EVENT_INTENTS
    assert {r["intent"] for r in HELD_OUT} == set(INTENTS)
    assert {r["event_intent"] for r in HELD_OUT} == set(EVENT_INTENTS)


def test_accuracy_on_the_labelled_set() -> None:
    report = [f"\nintent classifier on {len(ROWS)} labelled requests "
              f"(tune {len(TUNE)}, held-out {len(HELD_OUT)})"]
    scores = {}
    for field, labels in (("intent", INTENTS), ("event_intent", EVENT_INTENTS)):
        for name, rows in (("tune", TUNE), ("held-out", HELD_OUT), ("all", ROWS)):
            scores[(field, name)] = accuracy(rows, field)
        report.append(f"{field}: tune {scores[(field, 'tune')]:.3f}  held-out {scores[(field, 'held-out')]:.3f}"
                      f"  all {scores[(field, 'all')]:.3f}  (floor {FLOOR[field]:.2f})")
        report.append(f"  held-out confusion ({len(HELD_OUT)})\n{confusion(HELD_OUT, field, labels)}")
        report.append(f"  whole-set confusion ({len(ROWS)})\n{confusion(ROWS, field, labels)}")
    print("\n".join(report))
    for field in ("intent", "event_intent"):
        for name in ("tune", "held-out"):
            assert scores[(field, name)] >= FLOOR[field], (field, name, scores[(field, name)])


@pytest.mark.parametrize("text", [r["text"] for r in ROWS] + ["", "   ", "!!!", "x" * 5000, "ÉTÉ café naïve"])
def test_invariants(text: str) -> None:
    c = classify(text)
    assert isinstance(c, Classification)
    assert 0.0 <= c.confidence <= 1.0
    assert c.intent in INTENTS and c.event_intent in EVENT_INTENTS
    assert c.event_category == CATEGORY[c.event_intent]
    assert set(c.keywords) == {"setup_keywords", "execution_keywords", "neutral_keywords"}
    assert all(isinstance(w, str) for ws in c.keywords.values() for w in ws)
    assert c.clarification_needed == (c.intent == "ambiguous")
    assert c.recommended_action == {"execution": "execute_retriever", "setup": "setup_pipeline",
                                    "ambiguous": "ask_clarification"}[c.intent]
    assert c.reasoning
    assert classify(text) == c  # deterministic


def test_contract_cases_other_tests_rely_on() -> None:
    c = classify("find documents about redis streams")
    assert (c.intent, c.recommended_action, c.clarification_needed) == ("execution", "execute_retriever", False)
    assert "find" in c.keywords["execution_keywords"] and c.event_intent == "retriever_search"
    assert classify("set up a pipeline to ingest and index my videos").intent == "setup"
    vague = classify("videos")
    assert vague.intent == "ambiguous" and vague.clarification_needed
    assert classify("list collections").event_intent == "data_browse"
    assert classify("hello").event_intent == "conversation"
    assert classify("hello there").event_intent == "conversation"
    assert classify("create a new collection named foo").event_intent == "collection_management"
    assert classify("delete the collection named foo").event_intent == "collection_management"
    for q in ("find documents about impeller cavitation in the seawater intake pump at Tromso",
              "find documents about redis streams and consumer groups", "find notes about redis"):
        assert classify(q).event_intent == "retriever_search"


def test_clear_requests_are_more_confident_than_vague_ones() -> None:
    assert classify("search my videos for red cars").confidence > classify("videos").confidence
    assert classify("hello").confidence < classify("find documents about redis").confidence
