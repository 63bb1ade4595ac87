"""The OpenAI-compatible provider against the local fake of a streaming Chat Completions server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, Text, ToolCall
from worker.models.base import StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage
from worker.models.errors import ProviderError
from worker.models.openai import NO_KEY, OpenAIModel, StreamReader, messages_for, stable_call_id

pytestmark = pytest.mark.anyio
KEY = "sk-openai-test-0123456789abcdef"
MODEL = "fake-gpt"
SEARCH = {"query": "redis \"streams\" ünïcode", "limit": 3}
OUTPUT = {"documents": [{"document_id": "n0", "metadata": {"title": "Redis streams"}}]}


def make_turn(**overrides: Any) -> Turn:
    values: dict[str, Any] = {
        "message_id": "msg_a", "content": "find notes about redis", "intent": "retriever_search",
        "system_prompt": "You are a data assistant.", "history": [], "memory": None,
        "tools": ["list_collections", "smart_search"], "model": MODEL, "max_tokens": 1024, "temperature": 0.3,
    }
    return Turn(**(values | overrides))


async def collect(model: OpenAIModel, turn: Turn) -> list[StepEvent]:
    return [ev async for ev in model.step(turn)]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=None, api_key=KEY) as server:  # unscripted requests are refused
        yield server


@pytest.fixture
async def model(fake: FakeOpenAI) -> AsyncIterator[OpenAIModel]:
    async with OpenAIModel(base_url=fake.base_url, api_key=KEY, timeout_s=5, max_retries=2) as m:
        yield m


async def test_text_deltas_arrive_in_order_then_usage(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text("Hel", "lo", ", world")], prompt_tokens=21, completion_tokens=4))
    events = await collect(model, make_turn())
    assert events == [TextDelta("Hel"), TextDelta("lo"), TextDelta(", world"), Usage(21, 4)]
    (served,) = fake.served
    assert served.headers["authorization"] == f"Bearer {KEY}"
    body = served.body
    assert body["model"] == MODEL and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 1024 and body["temperature"] == 0.3
    assert body["messages"] == [{"role": "system", "content": "You are a data assistant."},
                                {"role": "user", "content": "find notes about redis"}]
    assert [t["function"]["name"] for t in body["tools"]] == ["list_collections", "smart_search"]
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in body["tools"])
    # The fake marks the answer ended after its last write, which can reach us first.
    assert await asyncio.to_thread(served.finished.wait, 10) and not served.disconnected.is_set()


async def test_tool_call_round_trip(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text("Let me look. "), ToolCall("smart_search", SEARCH, chunks=5, id="call_Provider01")],
                      prompt_tokens=50, completion_tokens=9),
                Reply([Text("Found ", "one.")], prompt_tokens=80, completion_tokens=3))
    turn = make_turn(history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
                     memory={"name": "Ada"})
    first = await collect(model, turn)
    assert first[0] == TextDelta("Let me look. ")
    (use,) = [e for e in first if isinstance(e, ToolUse)]
    assert use.name == "smart_search" and use.inputs == SEARCH
    # The id is ours, not the provider's: the first call of the message, this name, these inputs.
    assert use.tool_call_id == stable_call_id(0, "smart_search", SEARCH) != "call_Provider01"
    assert first[-1] == Usage(50, 9)

    turn.reports.append(ToolReport(use.tool_call_id, use.name, use.inputs, True, OUTPUT))
    second = await collect(model, turn)
    assert second == [TextDelta("Found "), TextDelta("one."), Usage(80, 3)]

    sent = fake.bodies[1]["messages"]
    assert sent[0]["role"] == "system" and '"name":"Ada"' in sent[0]["content"]
    assert sent[1:4] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "find notes about redis"}]
    assert sent[4] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": use.tool_call_id, "type": "function",
         "function": {"name": "smart_search", "arguments": json.dumps(SEARCH, separators=(",", ":"),
                                                                      ensure_ascii=False)}}]}
    assert sent[5] == {"role": "tool", "tool_call_id": use.tool_call_id, "content": sent[5]["content"]}
    assert json.loads(sent[5]["content"]) == OUTPUT
    assert len(sent) == 6


@pytest.mark.parametrize("interleave", [False, True], ids=["in-turn", "interleaved"])
async def test_parallel_tool_calls_in_one_step(fake: FakeOpenAI, model: OpenAIModel, interleave: bool) -> None:
    fake.script(Reply([ToolCall("list_collections", {}, chunks=1), ToolCall("smart_search", SEARCH, chunks=4),
                       ToolCall("smart_search", {"query": "consumer groups"}, chunks=3)], interleave=interleave),
                Reply([Text("Both done.")]))
    turn = make_turn()
    uses = [e for e in await collect(model, turn) if isinstance(e, ToolUse)]
    assert [(u.name, u.inputs) for u in uses] == [("list_collections", {}), ("smart_search", SEARCH),
                                                  ("smart_search", {"query": "consumer groups"})]
    assert [u.tool_call_id for u in uses] == [stable_call_id(n, u.name, u.inputs) for n, u in enumerate(uses)]
    assert len({u.tool_call_id for u in uses}) == 3
    for u in uses:
        turn.reports.append(ToolReport(u.tool_call_id, u.name, u.inputs, True, {"ok": u.name}))
    assert [e for e in await collect(model, turn) if isinstance(e, TextDelta)] == [TextDelta("Both done.")]
    sent = fake.bodies[1]["messages"]  # the fake refused it unless every call is answered right after
    assert [c["id"] for c in sent[-4]["tool_calls"]] == [u.tool_call_id for u in uses]
    assert [m["tool_call_id"] for m in sent[-3:]] == [u.tool_call_id for u in uses]


async def test_a_later_step_numbers_its_calls_after_the_earlier_ones(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([ToolCall("smart_search", SEARCH)]))
    earlier = ToolReport(stable_call_id(0, "list_collections", {}), "list_collections", {}, True, {})
    (use,) = [e for e in await collect(model, make_turn(reports=[earlier])) if isinstance(e, ToolUse)]
    assert use.tool_call_id == stable_call_id(1, "smart_search", SEARCH)


def test_the_same_call_gets_the_same_id_whatever_the_provider_calls_it() -> None:
    assert stable_call_id(0, "smart_search", {"a": 1, "b": [2]}) == stable_call_id(0, "smart_search", {"b": [2], "a": 1})
    assert stable_call_id(0, "smart_search", SEARCH) != stable_call_id(1, "smart_search", SEARCH)
    assert stable_call_id(0, "smart_search", SEARCH) != stable_call_id(0, "smart_search", {"query": "x"})


def test_a_server_that_numbers_every_call_zero_still_gives_separate_calls() -> None:
    from openai.types.chat import ChatCompletionChunk

    def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": parts} if parts else {}, "finish_reason": finish}]})

    reader = StreamReader()
    reader.feed(chunk([{"index": 0, "id": "a", "type": "function", "function": {"name": "list_collections",
                                                                                "arguments": "{}"}}]))
    reader.feed(chunk([{"index": 0, "id": "b", "type": "function", "function": {"name": "smart_search",
                                                                                "arguments": '{"query": '}}]))
    reader.feed(chunk([{"index": 0, "function": {"arguments": '"x"}'}}]))
    reader.feed(chunk([], "tool_calls"))
    assert reader.finished
    assert [(u.name, u.inputs) for u in reader.tool_uses()] == [("list_collections", {}),
                                                               ("smart_search", {"query": "x"})]


async def test_error_chunk_mid_stream_is_a_provider_error_after_the_text_before_it(
        fake: FakeOpenAI, model: OpenAIModel) -> None:
    # Chunks: role, then the three texts: the error replaces the third text.
    fake.script(Reply([Text("Partial ", "answer ", "never sent")], error_after=3, error_type="server_error"))
    seen: list[StepEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for ev in model.step(make_turn()):
            seen.append(ev)
    assert seen == [TextDelta("Partial "), TextDelta("answer ")]
    err = caught.value
    assert err.kind == "server_error" and err.retryable and err.mid_stream and err.provider == "openai"
    assert "server_error" in str(err) and KEY not in str(err)
    assert len(fake.served) == 1  # a failure after chunks flowed is not retried


async def test_vllm_style_error_chunk_carries_its_status(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text("a", "b")], error_after=1, error_type="BadRequestError", error_code="400"))
    with pytest.raises(ProviderError) as caught:
        await collect(model, make_turn())
    assert caught.value.status == 400 and not caught.value.retryable and not caught.value.mid_stream


async def test_429_with_retry_after_is_retried_by_the_sdk(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply(status=429, error_type="requests", error_code="rate_limit_exceeded", retry_after="1"),
                Reply([Text("after the wait")]))
    events = await collect(model, make_turn())
    assert events[0] == TextDelta("after the wait")
    assert [s.status for s in fake.served] == [429, 200]
    assert fake.served[1].headers["x-stainless-retry-count"] == "1"  # the SDK's own retry


async def test_refusals_are_retried_within_the_budget_then_reported(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(*[Reply(status=503, error_type="server_error", retry_after_ms="20")] * 3)  # 1 + max_retries
    with pytest.raises(ProviderError) as caught:
        await collect(model, make_turn())
    err = caught.value
    assert err.status == 503 and err.retryable and not err.mid_stream
    assert "HTTP 503" in str(err)
    assert [s.status for s in fake.served] == [503, 503, 503] and not fake.replies


async def test_bad_request_is_not_retried(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply(status=400, error_type="invalid_request_error"), Reply([Text("never")]))
    with pytest.raises(ProviderError) as caught:
        await collect(model, make_turn())
    assert caught.value.status == 400 and not caught.value.retryable
    assert len(fake.served) == 1


async def test_wrong_key_is_a_401_provider_error(fake: FakeOpenAI) -> None:
    async with OpenAIModel(base_url=fake.base_url, api_key="sk-wrong", max_retries=2) as m:
        with pytest.raises(ProviderError) as caught:
            await collect(m, make_turn())
    assert caught.value.status == 401 and not caught.value.retryable and "sk-wrong" not in str(caught.value)
    assert len(fake.served) == 1


async def test_a_stalled_stream_times_out_and_the_connection_is_closed(fake: FakeOpenAI) -> None:
    fake.script(Reply([Text("one ", "two ", "three")], stall_after=2))
    async with OpenAIModel(base_url=fake.base_url, api_key=KEY, timeout_s=0.5) as m:
        seen: list[StepEvent] = []
        with pytest.raises(ProviderError) as caught:
            async for ev in m.step(make_turn()):
                seen.append(ev)
    assert seen == [TextDelta("one ")]
    assert caught.value.kind == "timeout_error" and caught.value.retryable and caught.value.mid_stream
    assert fake.served[0].disconnected.wait(10)


async def test_a_stream_cut_before_finish_is_incomplete(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text("a", "b", "c")], cut_after=3))
    with pytest.raises(ProviderError) as caught:
        await collect(model, make_turn())
    assert caught.value.kind == "incomplete_stream" and caught.value.mid_stream


async def test_invalid_tool_arguments_are_a_provider_error(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([ToolCall("smart_search", {}, raw_arguments='{"query": "unterminated')]))
    with pytest.raises(ProviderError) as caught:
        await collect(model, make_turn())
    assert caught.value.kind == "invalid_tool_input"


async def test_cancelling_the_consumer_closes_the_providers_connection(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text(*[f"t{i} " for i in range(50)])], delay_s=0.05))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in model.step(make_turn()):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    served = fake.served[0]
    assert await asyncio.to_thread(served.disconnected.wait, 10)
    assert served.chunks_sent < 50


async def test_closing_the_step_early_closes_the_connection(fake: FakeOpenAI, model: OpenAIModel) -> None:
    fake.script(Reply([Text(*[f"t{i} " for i in range(50)])], delay_s=0.05))
    events = model.step(make_turn())
    assert await anext(events) == TextDelta("t0 ")
    await events.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(fake.served[0].disconnected.wait, 10)


async def test_no_key_for_local_servers_and_no_key_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with FakeOpenAI(responder=None) as local:
        local.script(Reply([Text("hi")]))
        async with OpenAIModel(base_url=local.base_url) as m:
            await collect(m, make_turn())
    assert local.served[0].headers["authorization"] == f"Bearer {NO_KEY}"


def test_history_maps_like_claudes() -> None:
    turn = make_turn(history=[{"role": "assistant", "content": "orphan"}, {"role": "user", "content": "a"},
                              {"role": "user", "content": "b"}, {"role": "assistant", "content": " "}],
                     system_prompt="")
    assert messages_for(turn) == [{"role": "user", "content": "a\n\nb\n\nfind notes about redis"}]
