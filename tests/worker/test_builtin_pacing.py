"""The built-in model's pacing (what the bench's end-to-end scenario uses): a first-token delay
before each step's first output and a token delay between tokens. The sleeps are recorded, not
timed: no wall clock in tests."""

from __future__ import annotations

from typing import Any

import pytest

from shared.settings import Settings, SettingsError
from worker.models import builtin
from worker.models.base import TextDelta, Turn
from worker.models.builtin import BuiltinModel

pytestmark = pytest.mark.anyio


class Sleeps:
    """Every sleep the model takes, as (seconds, text pieces it had yielded before)."""

    def __init__(self) -> None:
        self.pieces = 0
        self.seen: list[tuple[float, int]] = []

    async def sleep(self, s: float) -> None:
        self.seen.append((s, self.pieces))

    async def collect(self, model: BuiltinModel) -> list[str]:
        turn = Turn(message_id="msg_pacing", content="hello, how are you?", intent="conversation",
                    system_prompt="", history=[], memory=None, tools=[], model="agentstream-builtin",
                    max_tokens=512, temperature=0.0)
        out = []
        async for ev in model.step(turn):
            if isinstance(ev, TextDelta):
                out.append(ev.text)
                self.pieces += 1
        return out


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    s = Sleeps()
    monkeypatch.setattr(builtin.asyncio, "sleep", s.sleep)
    return s


async def test_first_token_delay_comes_before_the_first_piece_then_token_delays_between(sleeps: Sleeps) -> None:
    pieces = await sleeps.collect(BuiltinModel(token_delay_ms=20, first_token_delay_ms=200))
    assert len(pieces) > 2
    assert sleeps.seen == [(0.2, 0)] + [(0.02, n) for n in range(1, len(pieces))]


async def test_no_pacing_by_default(sleeps: Sleeps) -> None:
    assert await sleeps.collect(BuiltinModel())
    assert sleeps.seen == []


def test_first_token_delay_setting_is_read_and_checked() -> None:
    env: dict[str, Any] = {"AGENTSTREAM_BUILTIN_FIRST_TOKEN_DELAY_MS": "150"}
    assert Settings.from_env(env).builtin_first_token_delay_ms == 150
    with pytest.raises(SettingsError, match="AGENTSTREAM_BUILTIN_FIRST_TOKEN_DELAY_MS"):
        Settings.from_env({"AGENTSTREAM_BUILTIN_FIRST_TOKEN_DELAY_MS": "-1"})
