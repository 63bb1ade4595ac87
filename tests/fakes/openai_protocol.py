"""The Chat Completions streaming protocol as OpenAI speaks it, for the fake server (pure).

One answer is a list of ``chat.completion.chunk`` objects, each sent as ``data: {json}``: the
first delta carries the role, text comes as ``content`` deltas, each tool call opens with its
index, id and name and then sends its JSON arguments in fragments, the last choice chunk carries
``finish_reason``; when the request asked for ``stream_options.include_usage`` every chunk has
``"usage": null`` and one more chunk with empty ``choices`` carries the usage; ``data: [DONE]``
ends the stream. Errors are ``{"error": {"message", "type", "param", "code"}}``, as an HTTP body
or as a ``data:`` line in the middle of a stream. ``problem`` refuses what the real API refuses.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


class Text:
    """Assistant text, streamed as one ``content`` delta per chunk."""

    def __init__(self, *chunks: str) -> None:
        self.chunks = chunks


@dataclass(frozen=True)
class ToolCall:
    """A function tool call; its JSON arguments are streamed in ``chunks`` fragments."""

    name: str
    inputs: dict[str, Any]
    chunks: int = 3
    id: str | None = None  # default: a fresh random id per call, as OpenAI's are
    raw_arguments: str | None = None  # sent instead of json.dumps(inputs) (a broken model)


@dataclass(frozen=True)
class Reply:
    blocks: list[Text | ToolCall] = field(default_factory=list)
    prompt_tokens: int = 12
    completion_tokens: int = 8
    finish_reason: str | None = None  # default: tool_calls if a ToolCall is present, else stop
    status: int = 200  # other than 200: refuse with OpenAI's error body, no stream
    error_type: str = "server_error"
    error_code: str | None = None
    retry_after: str | None = None  # the refusal's retry-after header (seconds)
    retry_after_ms: str | None = None  # and OpenAI's retry-after-ms, which its SDKs read first
    error_after: int | None = None  # send an error chunk instead of chunk n, then end (no [DONE])
    cut_after: int | None = None  # close the stream silently after n chunks (no finish, no [DONE])
    stall_after: int | None = None  # after n chunks send nothing more until the client goes away
    delay_s: float = 0.0  # pause before every chunk after the first
    interleave: bool = False  # parallel calls' fragments alternate (some servers do), not in turn


def plausible(body: dict[str, Any]) -> Reply:
    """A stand-in model: search (or list) with an offered tool first, then answer from results."""
    messages = body["messages"]
    if messages[-1].get("role") == "tool":
        results = 0
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            results += 1
        return Reply([Text("From ", f"{results} tool result(s): ", "here is what I found.")])
    offered = {t["function"]["name"] for t in body.get("tools", [])}
    question = messages[-1].get("content") if isinstance(messages[-1].get("content"), str) else ""
    if "smart_search" in offered:
        return Reply([Text("Let me search. "), ToolCall("smart_search", {"query": question, "limit": 5})])
    if "list_collections" in offered:
        return Reply([ToolCall("list_collections", {})])
    return Reply([Text("Hello ", "from ", "the fake.")])


def call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")[:24]


def chunks_for(reply: Reply, model: str, completion_id: str, tool_ids: list[str],
               include_usage: bool) -> list[dict[str, Any]]:
    """The chunk objects of one streamed answer, in protocol order (pure)."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                               "model": model, "service_tier": "default", "system_fingerprint": "fp_fake0001",
                               "choices": choices}
        if include_usage:
            out["usage"] = usage  # null on every chunk but the last
        out["obfuscation"] = secrets.token_hex(3)  # OpenAI pads chunks; clients must ignore it
        return out

    def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

    out = [chunk(delta({"role": "assistant", "content": "", "refusal": None}))]
    for block in reply.blocks:
        if isinstance(block, Text):
            out += [chunk(delta({"content": c})) for c in block.chunks]
    calls = [b for b in reply.blocks if isinstance(b, ToolCall)]
    streams: list[list[dict[str, Any]]] = []
    for k, (call, cid) in enumerate(zip(calls, tool_ids, strict=True)):
        opening = {"index": k, "id": cid, "type": "function", "function": {"name": call.name, "arguments": ""}}
        raw = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.inputs)
        fragments = [{"index": k, "function": {"arguments": p}} for p in _split(raw, call.chunks)]
        streams.append([opening, *fragments])
    if reply.interleave:
        order = [s[i] for i in range(max(map(len, streams), default=0)) for s in streams if i < len(s)]
    else:
        order = [part for s in streams for part in s]
    out += [chunk(delta({"tool_calls": [part]})) for part in order]
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    out.append(chunk(delta({}, finish)))
    if include_usage:
        out.append(chunk([], {
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}))
    return out


def data_line(obj: dict[str, Any] | str) -> bytes:
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def problem(body: Any, headers: dict[str, str], api_key: str | None) -> tuple[int, dict[str, Any]] | None:
    """What the real API would refuse: (status, error body), or None."""
    if api_key is not None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 401, error_body("You didn't provide an API key. You need to provide your API key in an "
                                   "Authorization header using Bearer auth.", "invalid_request_error")
        if auth[len("Bearer "):] != api_key:
            return 401, error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    if not isinstance(body, dict):
        return 400, error_body("We could not parse the JSON body of your request.", "invalid_request_error")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return 400, error_body("you must provide a model parameter", "invalid_request_error")
    if body.get("stream") is not True:
        return 400, error_body("this fake only streams: send stream=true", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, error_body("[] is too short - 'messages'", "invalid_request_error", param="messages")
    if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        return 400, error_body("Invalid 'max_tokens': integer below minimum value.", "invalid_request_error",
                               "integer_below_min_value", "max_tokens")
    if "temperature" in body and not (isinstance(body["temperature"], int | float) and 0 <= body["temperature"] <= 2):
        return 400, error_body("Invalid 'temperature'.", "invalid_request_error", param="temperature")
    for n, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return 400, error_body(f"Invalid 'tools[{n}]'.", "invalid_request_error", param=f"tools[{n}]")
    for n, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return 400, error_body(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                   "'user', 'function', 'tool', and 'developer'.", "invalid_request_error",
                                   "invalid_value", f"messages[{n}].role")
        calls = (m.get("tool_calls") or []) if role == "assistant" else []
        for c in calls:
            fn = c.get("function") or {}
            if c.get("type") != "function" or not c.get("id") or not isinstance(fn.get("arguments"), str):
                return 400, error_body(f"Invalid 'messages[{n}].tool_calls'.", "invalid_request_error",
                                       param=f"messages[{n}].tool_calls")
        if calls:
            answered = set()
            for after in messages[n + 1:]:
                if after.get("role") != "tool":
                    break
                answered.add(after.get("tool_call_id"))
            if missing := [c["id"] for c in calls if c["id"] not in answered]:
                return 400, error_body("An assistant message with 'tool_calls' must be followed by tool messages "
                                       "responding to each 'tool_call_id'. The following tool_call_ids did not "
                                       f"have response messages: {', '.join(missing)}", "invalid_request_error",
                                       param=f"messages.[{n}].role")
        if role == "tool":
            k = n - 1
            while k >= 0 and messages[k].get("role") == "tool":
                k -= 1
            asked = {c.get("id") for c in (messages[k].get("tool_calls") or [])} if k >= 0 else set()
            if messages[k].get("role") != "assistant" or m.get("tool_call_id") not in asked:
                return 400, error_body("Invalid parameter: messages with role 'tool' must be a response to a "
                                       "preceeding message with 'tool_calls'.", "invalid_request_error",
                                       param=f"messages.[{n}].role")
            if not isinstance(m.get("content"), str):
                return 400, error_body(f"Invalid 'messages[{n}].content'.", "invalid_request_error",
                                       param=f"messages[{n}].content")
        elif role in ("system", "developer", "user") and not isinstance(m.get("content"), str | list):
            return 400, error_body(f"Invalid 'messages[{n}].content'.", "invalid_request_error",
                                   param=f"messages[{n}].content")
    return None


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]
