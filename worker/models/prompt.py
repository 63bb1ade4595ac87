"""What every LLM provider builds its request from, the same way: the system prompt (with the
user's memory) and the dialogue so far as alternating turns."""

from __future__ import annotations

from typing import Any

import msgspec

from worker.models.base import Turn

_encode = msgspec.json.Encoder()


def system_for(turn: Turn) -> str:
    """The system prompt, with the user's memory appended as JSON."""
    if not turn.memory:
        return turn.system_prompt
    memory = _encode.encode(turn.memory).decode()
    return f"{turn.system_prompt}\n\nWhat you remember about this user (JSON):\n{memory}".lstrip()


def add_text(out: list[dict[str, Any]], role: str, text: str) -> None:
    """Append a text turn. The providers (Claude, and the chat templates of many open models
    behind vLLM or llama.cpp) refuse empty text and want turns that alternate and start with
    the user: empty turns are dropped, and consecutive turns of one role (an answer that
    failed, say) are joined rather than sent as a pair."""
    if role not in ("user", "assistant") or not text.strip() or (not out and role != "user"):
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"] += "\n\n" + text
    else:
        out.append({"role": role, "content": text})
