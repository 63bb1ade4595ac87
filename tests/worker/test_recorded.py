"""Rebuilding the conversation from a message's recorded events (pure): what a continuation or
a retry replays, and what it asks the model for."""

from __future__ import annotations

from shared.events import (
    ConfirmationRequired,
    Event,
    Intent,
    Reset,
    RetrieverExecution,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    encode_payload,
    type_of,
)
from shared.stores.confirmations import confirmation_id
from worker.recorded import call_id, effective, rebuild


def rows(*events: Event) -> list[tuple[str, str, bytes]]:
    return [(f"{i + 1}-0", type_of(e), encode_payload(e)) for i, e in enumerate(events)]


INTENT = Intent(intent="retriever_search", confidence=0.9, category="retriever", reasoning="r",
                context_scope="namespace")
PROCESSING = Thinking(step="processing", message="Analyzing your request...")
A = ToolCall(tool_name="list_collections", tool_call_id="run_a", inputs={})
B = ToolCall(tool_name="smart_search", tool_call_id="run_b", inputs={"query": "q", "limit": 5})


def result(call: ToolCall) -> ToolResult:
    return ToolResult(tool_name=call.tool_name, tool_call_id=call.tool_call_id, success=True, output={"n": 1},
                      latency_ms=1.0)


RUN = RetrieverExecution(tool_name="smart_search", execution_id="exec_1", retriever_id=None, is_adhoc=True,
                         documents_returned=1, latency_ms=1.0, message="m")


def test_call_ids_are_stable_by_place_name_and_canonical_inputs():
    one = call_id("msg_1", 0, "smart_search", {"query": "q", "limit": 5})
    assert one == call_id("msg_1", 0, "smart_search", {"limit": 5, "query": "q"})  # key order is not identity
    assert one.startswith("run_") and len(one) == 20
    assert len({one, call_id("msg_1", 1, "smart_search", {"query": "q", "limit": 5}),
                call_id("msg_2", 0, "smart_search", {"query": "q", "limit": 5}),
                call_id("msg_1", 0, "smart_search", {"query": "q", "limit": 6})}) == 4


def test_a_decided_step_is_replayed_and_an_unfinished_text_is_asked_again():
    events = [INTENT, PROCESSING, Token(content="Let me look. "), Thinking(step="tool_selection", message="Using"),
              A, B, result(A), result(B), RUN, Token(content="Half an ans")]
    got = rebuild(effective(rows(*events)))
    (step,) = got.steps
    assert "".join(step.text) == "Let me look. "
    assert [c.event for c in step.calls] == [A, B]
    assert [c.result for c in step.calls] == [result(A), result(B)]
    assert step.calls[1].follow == [RUN] and step.calls[0].follow == []
    assert got.replay == events[2:9]  # not the header (the pipeline emits it), not the unfinished text


def test_a_paused_call_keeps_its_confirmation_and_has_no_result():
    write = ToolCall(tool_name="create_collection", tool_call_id="run_w", inputs={"collection_name": "x"})
    conf = ConfirmationRequired(confirmation_id=confirmation_id("run_w"), tool_name="create_collection",
                                inputs={"collection_name": "x"}, expires_at="2026-01-01T00:00:00.000Z")
    got = rebuild(effective(rows(INTENT, PROCESSING, Thinking(step="tool_selection", message="Using"), write, conf)))
    (call,) = got.steps[0].calls
    assert call.confirmation == conf and call.result is None


def test_calls_after_an_outcome_start_the_next_step():
    got = rebuild(effective(rows(INTENT, PROCESSING, A, result(A), B, result(B))))
    assert [[c.event for c in s.calls] for s in got.steps] == [[A], [B]]


def test_what_a_retry_reset_discarded_is_not_state():
    recorded = rows(INTENT, PROCESSING, A, Token(content="gone"))
    recorded.append(("5-0", "reset", encode_payload(Reset(reason="retry", status="running", replay_from="2-0",
                                                          attempt=2, discard_after="2-0"))))
    got = rebuild(effective(recorded))
    assert got.steps == [] and got.replay == []
