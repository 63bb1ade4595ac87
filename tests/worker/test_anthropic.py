"""The Anthropic provider against the local fake of the streaming Messages API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest

from dataplane.catalogue import BY_NAME
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text, ToolCall
from worker.models.anthropic import AnthropicModel, messages_for
from worker.models.base import StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage
from worker.models.errors import ProviderError

pytestmark = pytest.mark.anyio
KEY = "sk-ant-test-0123456789abcdef"


def make_turn(**overrides: Any) -> Turn:
    values: dict[str, Any] = {
        "message_id": "msg_a", "content": "find notes about redis", "intent": "retriever_search",
        "system_prompt": "You are a data assistant.", "history": [], "memory": None,
        "tools": ["list_collections", "smart_search"], "model": "claude-haiku-4-5",
        "max_tokens": 1024, "temperature": 0.3,
    }
    return Turn(**(values | overrides))


async def collect(model: AnthropicModel, turn: Turn) -> list[StepEvent]:
    return [ev async for ev in model.step(turn)]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(responder=None) as server:  # unscripted requests are refused
        yield server


@pytest.fixture
async def model(fake: FakeAnthropic) -> AsyncIterator[AnthropicModel]:
    async with AnthropicModel(api_key=KEY, base_url=fake.url) as m:
        yield m


async def test_text_deltas_arrive_in_order(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("Hel", "lo", ", world")]))
    events = await collect(model, make_turn())
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo"),
                                                                TextDelta(", world")]
    assert isinstance(events[-1], Usage)


async def test_tool_use_round_trip(fake: FakeAnthropic, model: AnthropicModel) -> None:
    inputs = {"query": "redis \"streams\" ünïcode", "limit": 3}
    fake.script(Reply([Text("Let me look. "), ToolCall("smart_search", inputs, chunks=5)]),
                Reply([Text("Found ", "one.")]))
    turn = make_turn(history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}])

    first = await collect(model, turn)
    uses = [e for e in first if isinstance(e, ToolUse)]
    assert len(uses) == 1
    use = uses[0]
    assert use.tool_call_id.startswith("toolu_") and use.name == "smart_search" and use.inputs == inputs
    assert first[0] == TextDelta("Let me look. ")

    output = {"documents": [{"document_id": "n0", "metadata": {"title": "Redis streams"}}]}
    turn.reports.append(ToolReport(use.tool_call_id, use.name, use.inputs, True, output))
    second = await collect(model, turn)
    assert "".join(e.text for e in second if isinstance(e, TextDelta)) == "Found one."
    assert not [e for e in second if isinstance(e, ToolUse)]

    sent = fake.bodies[1]["messages"]
    assert sent[:3] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "find notes about redis"}]
    assert sent[3] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": use.tool_call_id, "name": "smart_search", "input": inputs}]}
    (result,) = sent[4]["content"]
    assert sent[4]["role"] == "user"
    assert result["type"] == "tool_result" and result["tool_use_id"] == use.tool_call_id
    assert json.loads(result["content"]) == output and result["is_error"] is False
    assert len(fake.bodies[0]["messages"]) == 3  # the first step carried no tool blocks


async def test_parallel_tool_uses_keep_their_ids_and_order(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([ToolCall("list_collections", {}), ToolCall("smart_search", {"query": "x"})]),
                Reply([Text("done")]))
    turn = make_turn()
    uses = [e for e in await collect(model, turn) if isinstance(e, ToolUse)]
    assert [u.name for u in uses] == ["list_collections", "smart_search"]
    assert uses[0].inputs == {}
    turn.reports += [ToolReport(u.tool_call_id, u.name, u.inputs, i == 0, {"error": "boom"} if i else {})
                     for i, u in enumerate(uses)]
    await collect(model, turn)
    assistant, results = fake.bodies[1]["messages"][-2:]
    assert [b["id"] for b in assistant["content"]] == [u.tool_call_id for u in uses]
    assert [(b["tool_use_id"], b["is_error"]) for b in results["content"]] == [
        (uses[0].tool_call_id, False), (uses[1].tool_call_id, True)]


async def test_usage_comes_from_message_start_and_delta(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("ok")], input_tokens=321, output_tokens=45))
    events = await collect(model, make_turn())
    assert [e for e in events if isinstance(e, Usage)] == [Usage(input_tokens=321, output_tokens=45)]


async def test_error_mid_stream_raises_provider_error_without_retry(fake: FakeAnthropic,
                                                                    model: AnthropicModel) -> None:
    # Events: message_start, ping, block start, two deltas, then the error instead of block stop.
    fake.script(Reply([Text("partial ", "answer", " never finished")], error_after=5),
                Reply([Text("a retry would get this")]))
    seen: list[StepEvent] = []
    with pytest.raises(ProviderError, match="overloaded_error") as caught:
        async for ev in model.step(make_turn()):
            seen.append(ev)
    assert seen == [TextDelta("partial "), TextDelta("answer")]
    assert caught.value.mid_stream and caught.value.retryable and caught.value.kind == "overloaded_error"
    assert len(fake.requests) == 1


async def test_stream_cut_before_message_stop_raises(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("half")], cut_after=4))
    with pytest.raises(ProviderError, match="before message_stop"):
        await collect(model, make_turn())


async def test_refusal_before_the_stream_is_retried_by_the_sdk(fake: FakeAnthropic,
                                                               model: AnthropicModel) -> None:
    fake.script(Reply(status=529), Reply([Text("second time lucky")]))
    events = await collect(model, make_turn())
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "second time lucky"
    assert len(fake.requests) == 2


async def test_client_error_is_not_retried(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply(status=400, error="invalid_request_error"))
    with pytest.raises(ProviderError, match=r"invalid_request_error \(HTTP 400\)") as caught:
        await collect(model, make_turn())
    assert not caught.value.retryable and not caught.value.mid_stream
    assert len(fake.requests) == 1


async def test_unreachable_server_raises_provider_error() -> None:
    with FakeAnthropic() as gone:
        url = gone.url
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)  # no backoff waits
    async with client:
        with pytest.raises(ProviderError, match="connection") as caught:
            await collect(AnthropicModel(api_key=KEY, client=client), make_turn())
    assert caught.value.retryable and caught.value.kind == "connection_error"


async def test_tools_are_restricted_to_the_turn(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("ok")]))
    await collect(model, make_turn(tools=["list_collections", "no_such_tool"]))
    tools = fake.bodies[0]["tools"]
    assert tools == [{"name": "list_collections", "description": BY_NAME["list_collections"].description,
                      "input_schema": BY_NAME["list_collections"].parameters}]


async def test_request_carries_model_limits_and_system(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("ok")]), Reply([Text("ok")]))
    await collect(model, make_turn())
    await collect(model, make_turn(memory={"remembered": ["likes redis"]}))
    plain, remembering = fake.bodies
    assert plain["model"] == "claude-haiku-4-5" and plain["max_tokens"] == 1024 and plain["stream"] is True
    assert plain["system"] == "You are a data assistant."
    assert remembering["system"].startswith("You are a data assistant.\n\n")
    assert "likes redis" in remembering["system"]


async def test_sampling_parameters_are_never_sent(fake: FakeAnthropic, model: AnthropicModel) -> None:
    """API version 2026-10-21 refuses temperature/top_p/top_k on every model with a 400."""
    fake.script(Reply([Text("ok")]))
    await collect(model, make_turn(temperature=0.0))
    assert not {"temperature", "top_p", "top_k"} & set(fake.bodies[0])


async def test_api_key_is_sent_and_never_shown(fake: FakeAnthropic, model: AnthropicModel) -> None:
    fake.script(Reply([Text("ok")]))
    await collect(model, make_turn())
    headers = fake.requests[0].headers
    # SDK 2.x sends the key as a bearer token (not x-api-key); the API accepts either.
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["anthropic-version"]
    assert KEY not in repr(model) and KEY not in str(model)
    assert fake.url in repr(model)


def test_history_is_cleaned_into_alternating_turns() -> None:
    turn = make_turn(content="and now?", history=[
        {"role": "assistant", "content": "stray greeting"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "answer"},
        {"role": "system", "content": "ignored"},
    ])
    assert messages_for(turn) == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "and now?"},
    ]


def test_recorded_steps_go_back_as_they_were_said_with_stable_ids() -> None:
    """Issue 18.1: each recorded step is one assistant turn (its text, then its tool_use blocks
    with the pipeline's stable ids) and one user turn of results; the model continues after."""
    a = ToolReport("run_aaaaaaaaaaaaaaaa", "list_collections", {}, True, {"collections": []}, step=0)
    b = ToolReport("run_bbbbbbbbbbbbbbbb", "smart_search", {"query": "q"}, False, {"error": "boom"}, step=1)
    turn = make_turn(content="find q", reports=[a, b], texts=["Looking. ", ""])
    assert messages_for(turn) == [
        {"role": "user", "content": "find q"},
        {"role": "assistant", "content": [{"type": "text", "text": "Looking. "},
                                          {"type": "tool_use", "id": a.tool_call_id, "name": a.name, "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": a.tool_call_id,
                                      "content": '{"collections":[]}', "is_error": False}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": b.tool_call_id, "name": b.name,
                                           "input": {"query": "q"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.tool_call_id,
                                      "content": '{"error":"boom"}', "is_error": True}]},
    ]
