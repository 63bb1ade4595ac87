import msgspec
import pytest

from shared import events as ev


def test_payload_has_exactly_the_reference_keys_and_no_tag():
    payload = msgspec.json.decode(ev.encode_payload(ev.Token(content="hi")))
    assert payload == {"content": "hi"}
    intent = ev.Intent(intent="retriever_search", confidence=0.9, category="retriever", reasoning="r",
                       context_scope="namespace")
    assert set(msgspec.json.decode(ev.encode_payload(intent))) == {
        "intent", "confidence", "category", "reasoning", "context_scope"}


def test_project_additions_are_omitted_at_their_defaults():
    err = msgspec.json.decode(ev.encode_payload(ev.Error(message="m", recoverable=False)))
    assert err == {"message": "m", "recoverable": False}
    err = msgspec.json.decode(ev.encode_payload(ev.Error(message="m", recoverable=False, code="cancelled")))
    assert err["code"] == "cancelled"


def test_done_carries_the_reference_keys():
    done = ev.Done(latency_ms=1.0, tool_calls_made=2, message_id="msg_x",
                   retriever_summary=ev.RetrieverSummary(), data_accessed_via_retriever=False)
    keys = set(msgspec.json.decode(ev.encode_payload(done)))
    assert {"latency_ms", "tool_calls_made", "message_id", "retriever_summary",
            "data_accessed_via_retriever"} <= keys


@pytest.mark.parametrize("event", [
    ev.Token(content="a\nb"),
    ev.Thinking(step="s", message="m"),
    ev.ToolCall(tool_name="t", tool_call_id="run_1", inputs={"q": 1}),
    ev.Reset(reason="retry", status="running", replay_from="0-0", attempt=2, discard_after="1-0"),
    ev.Done(latency_ms=1, tool_calls_made=0, message_id="m", retriever_summary=ev.RetrieverSummary(),
            data_accessed_via_retriever=False),
])
def test_round_trip(event):
    assert ev.decode_event(ev.type_of(event), ev.encode_payload(event)) == event


def test_every_reference_event_is_in_the_union():
    assert set(ev.EVENT_TYPES) >= {"intent", "thinking", "tool_call", "tool_result", "token", "message",
                                   "session_name", "done", "error", "retriever_execution", "pipeline_config"}
    assert ev.TERMINAL == {"done", "error"}


def test_payload_never_contains_a_raw_line_break():
    assert b"\n" not in ev.encode_payload(ev.Token(content="line1\nline2\r\n"))
