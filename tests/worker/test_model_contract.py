"""One contract, every model: the built-in model, Anthropic and an OpenAI-compatible server
(against their local fakes) must behave alike at the ``step`` interface, since the pipeline
drives them all the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from worker.models.anthropic import AnthropicModel
from worker.models.base import Model, StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage
from worker.models.builtin import BuiltinModel
from worker.models.openai import OpenAIModel

pytestmark = pytest.mark.anyio

CANNED: dict[str, Any] = {
    "list_collections": {"collections": [{"collection_name": "notes", "document_count": 4}]},
    "smart_search": {"documents": [{"document_id": "n0", "metadata": {"title": "Redis streams"}}]},
}


def make_turn(**overrides: Any) -> Turn:
    values: dict[str, Any] = {
        "message_id": "msg_contract", "content": "find notes about redis streams",
        "intent": "retriever_search", "system_prompt": "You are a helpful data assistant.",
        "history": [], "memory": None, "tools": ["list_collections", "smart_search"],
        "model": "claude-haiku-4-5", "max_tokens": 512, "temperature": 0.2,
    }
    return Turn(**(values | overrides))


def report(use: ToolUse) -> ToolReport:
    return ToolReport(use.tool_call_id, use.name, use.inputs, True, CANNED.get(use.name, {"ok": True}))


async def collect(model: Model, turn: Turn) -> list[StepEvent]:
    return [ev async for ev in model.step(turn)]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:  # its default responder behaves like a small tool-using model
        yield server


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:  # its default responder behaves like the Anthropic fake's
        yield server


@pytest.fixture(params=["builtin", "anthropic", "openai"])
async def model(request: pytest.FixtureRequest, fake: FakeAnthropic,
                fake_openai: FakeOpenAI) -> AsyncIterator[Model]:
    if request.param == "builtin":
        yield BuiltinModel()
        return
    if request.param == "openai":
        async with OpenAIModel(base_url=fake_openai.base_url) as m:
            yield m
        return
    async with AnthropicModel(api_key="sk-contract", base_url=fake.url) as m:
        yield m


async def test_first_step_asks_for_tools_or_answers(model: Model) -> None:
    turn = make_turn()
    events = await collect(model, turn)
    uses = [e for e in events if isinstance(e, ToolUse)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert uses or text
    assert all(isinstance(e, TextDelta | ToolUse | Usage) for e in events)


async def test_tool_uses_are_well_formed_and_allowed(model: Model) -> None:
    turn = make_turn()
    uses = [e for e in await collect(model, turn) if isinstance(e, ToolUse)]
    assert uses, "a search request with search tools offered should use one"
    for use in uses:
        assert isinstance(use.inputs, dict)
        assert use.name in turn.tools
        assert use.tool_call_id
    assert len({u.tool_call_id for u in uses}) == len(uses)


async def test_no_tools_offered_means_no_tool_use(model: Model) -> None:
    events = await collect(model, make_turn(tools=[], intent="conversation", content="hello there"))
    assert not [e for e in events if isinstance(e, ToolUse)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_given_reports_a_step_answers_with_text_and_usage(model: Model) -> None:
    turn = make_turn()
    turn.reports += [report(e) for e in await collect(model, turn) if isinstance(e, ToolUse)]
    events = await collect(model, turn)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    usages = [e for e in events if isinstance(e, Usage)]
    assert len(usages) == 1 and events[-1] == usages[0]
    assert usages[0].input_tokens >= 0 and usages[0].output_tokens >= 0


async def test_the_pipeline_loop_ends(model: Model) -> None:
    """Run steps as the pipeline does (tools between steps) until one asks for no tool."""
    turn = make_turn()
    for _ in range(6):
        uses = [e for e in await collect(model, turn) if isinstance(e, ToolUse)]
        if not uses:
            break
        turn.reports += [report(u) for u in uses]
    else:
        pytest.fail("the model kept asking for tools")
    assert turn.reports
