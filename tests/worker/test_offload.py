"""Short contents are scanned on the event loop, long ones in a thread (``worker/offload.py``):
the thread hop is paid only where inline work could stall the loop (issue 15.1), not by every
message. Where it runs is read from the thread that ran it, not from a clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from intent import classify
from worker import offload
from worker.models.base import Turn
from worker.models.builtin import BuiltinModel

pytestmark = pytest.mark.anyio

SHORT = "show me my collections"
LONG = "show me my collections " * 40  # 920 characters


def _thread_of(fn: Any) -> tuple[Any, list[int]]:
    ran_on: list[int] = []

    def wrapped(*args: Any) -> Any:
        ran_on.append(threading.get_ident())
        return fn(*args)

    return wrapped, ran_on


@pytest.mark.parametrize("content", [SHORT, "x" * offload.INLINE_MAX_CHARS])
async def test_a_short_content_is_classified_inline(content: str) -> None:
    fn, ran_on = _thread_of(classify)
    c = await offload.by_length(content, fn, content)
    assert ran_on == [threading.get_ident()]
    assert c == classify(content)


@pytest.mark.parametrize("content", [LONG, "x" * (offload.INLINE_MAX_CHARS + 1)])
async def test_a_long_content_is_classified_off_the_loop(content: str) -> None:
    fn, ran_on = _thread_of(classify)
    c = await offload.by_length(content, fn, content)
    assert len(ran_on) == 1 and ran_on[0] != threading.get_ident()
    assert c == classify(content)


@pytest.mark.parametrize(("content", "inline"), [(SHORT, True), (LONG, False)])
async def test_the_builtin_model_plans_by_the_same_rule(content: str, inline: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = BuiltinModel()
    plan, ran_on = _thread_of(model.plan)
    monkeypatch.setattr(model, "plan", plan)
    turn = Turn(message_id="msg_offload", content=content, intent="data_browse", system_prompt="", history=[],
                memory=None, tools=["list_collections"], model="agentstream-builtin", max_tokens=512,
                temperature=0.0)
    uses = [ev async for ev in model.step(turn)]
    assert uses and len(ran_on) == 1
    assert (ran_on[0] == threading.get_ident()) is inline
