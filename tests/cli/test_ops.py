"""``agentstream events …`` and ``sessions rebuild`` against a real embedded Redis.

Fixture data is written with the project's own stores (accept, claim, append), as the gateway
and worker would, without starting either.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from cli.main import main
from shared import connect, cursor, keys
from shared.events import (
    Done,
    Error,
    Event,
    Message,
    RetrieverSummary,
    Thinking,
    Token,
    encode_payload,
    type_of,
)
from shared.ids import new_id, now_ms
from shared.models import BUILTIN_MODEL, AgentConfig, CreateSessionRequest
from shared.settings import Settings
from shared.stores import event_log
from shared.stores.messages import MessageStore
from shared.stores.session_log import AssistantEntry, TurnEntry, UserEntry
from shared.stores.sessions import SessionStore
from tests.stack import ROOT, Stack

T = TypeVar("T")
SETTINGS = Settings()


@dataclass
class Fixture:
    url: str
    session: str  # two messages: one done, one cancelled
    messages: list[str] = field(default_factory=list)
    appended: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)


def run(url: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        client = connect.client(url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


async def new_session(r: aioredis.Redis) -> str:
    h = await SessionStore(r, SETTINGS).create("ns_test", "org_test", CreateSessionRequest(agent_config=AgentConfig()),
                                                BUILTIN_MODEL)
    return h[b"session_id"].decode()


async def new_message(r: aioredis.Redis, ses_id: str, content: str) -> str:
    msg_id = new_id("msg")
    await MessageStore(r, SETTINGS).accept(ses_id, "ns_test", msg_id,
                                           UserEntry(message_id=msg_id, ts=now_ms(), content=content),
                                           content, None, "")
    await r.set(keys.message_session(msg_id), ses_id)  # what the gateway's route does
    return msg_id


async def finish(r: aioredis.Redis, ses_id: str, msg_id: str, text: str) -> list[Event]:
    """Stream a reply the way the worker does: a claimed attempt, several appends, a done."""
    store = MessageStore(r, SETTINGS)
    attempt, _ = await store.claim(ses_id, msg_id, "w-test")
    first: list[Event] = [Thinking(step="plan", message="thinking\nabout it")]
    tokens: list[Event] = [Token(content=w + " ") for w in text.split()]
    last: list[Event] = [
        Message(content=text, message_id=msg_id, is_final=True),
        Done(latency_ms=12.5, tool_calls_made=0, message_id=msg_id,
             retriever_summary=RetrieverSummary(),
             data_accessed_via_retriever=False, total_tokens=len(tokens)),
    ]
    for batch in (first, tokens):
        await store.append(ses_id, msg_id, attempt, batch)
        await asyncio.sleep(0.003)  # distinct milliseconds, so replay timing has gaps
    await store.append(ses_id, msg_id, attempt, last,
                       log=[AssistantEntry(message_id=msg_id, ts=now_ms(), content=text),
                            TurnEntry(message_id=msg_id, ts=now_ms(), status="completed", latency_ms=12.5,
                                      tokens=len(tokens), tool_calls=0)],
                       stats={"assistant_messages": 1, "total_tokens": len(tokens), "total_latency_ms": 12.5,
                              "turns": 1})
    return first + tokens + last


def as_pairs(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [(type_of(e), json.loads(encode_payload(e))) for e in events]


@pytest.fixture(scope="module")
def data() -> Iterator[Fixture]:
    stack = Stack()
    stack.start_redis()

    async def build(r: aioredis.Redis) -> Fixture:
        ses_id = await new_session(r)
        fx = Fixture(url=stack.redis_url, session=ses_id)
        m1 = await new_message(r, ses_id, "hello")
        fx.appended[m1] = as_pairs(await finish(r, ses_id, m1, "hi there from the builtin model"))
        m2 = await new_message(r, ses_id, "and then")
        await MessageStore(r, SETTINGS).append(ses_id, m2, "*", [Token(content="partial")])
        await MessageStore(r, SETTINGS).cancel(ses_id, m2)
        fx.appended[m2] = [("token", {"content": "partial"}),
                           ("error", json.loads(encode_payload(Error(message="The message was cancelled",
                                                                     recoverable=False, code="cancelled",
                                                                     message_id=m2))))]
        fx.messages = [m1, m2]
        return fx

    try:
        yield run(stack.redis_url, build)
    finally:
        stack.stop()


@pytest.fixture
def cli(data: Fixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("AGENTSTREAM_REDIS_URL", data.url)

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def lines_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def check_ids_increase(lines: list[dict[str, Any]]) -> None:
    per_message: dict[str, list[tuple[int, int]]] = {}
    for line in lines:
        per_message.setdefault(line["message_id"], []).append(cursor.parse(line["id"]))
    for ids in per_message.values():
        assert all(a < b for a, b in zip(ids, ids[1:], strict=False))


def test_export_message_has_what_was_appended_in_order(cli, data: Fixture) -> None:
    m1 = data.messages[0]
    code, out, _ = cli("events", "export", m1)
    assert code == 0
    lines = lines_of(out)
    assert [(ln["type"], ln["payload"]) for ln in lines] == data.appended[m1]
    assert {ln["message_id"] for ln in lines} == {m1}
    assert all(ln["timestamp"].endswith("Z") for ln in lines)
    check_ids_increase(lines)


def test_export_session_is_every_message_in_log_order(cli, data: Fixture, tmp_path: Path) -> None:
    target = tmp_path / "session.jsonl"
    code, out, err = cli("events", "export", data.session, "-o", str(target))
    assert code == 0 and out == ""
    lines = lines_of(target.read_text())
    assert [(ln["type"], ln["payload"]) for ln in lines] == data.appended[data.messages[0]] + data.appended[data.messages[1]]
    assert [ln["message_id"] for ln in lines] == sorted(
        (ln["message_id"] for ln in lines), key=data.messages.index)
    check_ids_increase(lines)
    assert f"exported {len(lines)} events from 2 messages ({target.stat().st_size} bytes)" in err
    assert [p.name for p in tmp_path.iterdir()] == ["session.jsonl"]  # no temp file left behind


def test_export_since_returns_only_later_events(cli, data: Fixture) -> None:
    m1 = data.messages[0]
    _, out, _ = cli("events", "export", m1)
    everything = lines_of(out)
    code, out, _ = cli("events", "export", m1, "--since", everything[2]["id"])
    assert code == 0
    assert lines_of(out) == everything[3:]


def test_replay_max_speed_emits_valid_sse_frames_in_order(cli, data: Fixture, tmp_path: Path) -> None:
    target = tmp_path / "m.jsonl"
    cli("events", "export", data.messages[0], "-o", str(target))
    exported = lines_of(target.read_text())
    for source in (str(target), data.messages[0]):
        code, out, _ = cli("events", "replay", source, "--speed", "max")
        assert code == 0
        frames = out.split("\n\n")
        assert frames[-1] == "" and len(frames) - 1 == len(exported)
        for frame, line in zip(frames, exported, strict=False):
            fields = frame.split("\n")
            assert fields[0] == f"id: {line['id']}" and fields[1] == f"event: {line['type']}"
            data_lines = [f.removeprefix("data: ") for f in fields[2:]]
            assert all(f.startswith("data: ") for f in fields[2:])
            assert json.loads("\n".join(data_lines)) == line["payload"]


def test_replay_keeps_timing_scaled_by_speed(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cli import ops

    target = tmp_path / "slow.jsonl"
    target.write_text('{"id":"1000-0","type":"token","payload":{"content":"a"}}\n'
                      '{"id":"1400-0","type":"done","payload":{}}\n')
    # The pauses replay asks for, and what it had written when it paused: exact, where the wall
    # clock of a loaded machine could only bound them.
    pauses: list[tuple[float, str]] = []
    monkeypatch.setattr(ops, "time", SimpleNamespace(sleep=lambda s: pauses.append((s, capsys.readouterr().out))))
    code, out, _ = cli("events", "replay", str(target), "--speed", "2")
    assert code == 0 and len(pauses) == 1
    pause, before = pauses[0]
    assert pause == pytest.approx(0.2)  # the 400 ms gap, halved
    assert before.count("event: token") == 1 and "event: done" not in before  # between the two frames
    assert out.count("event: done") == 1 and "event: token" not in out


def test_replay_of_a_malformed_file_names_the_line(cli, tmp_path: Path) -> None:
    target = tmp_path / "bad.jsonl"
    target.write_text('{"id":"1-0","type":"token","payload":{"content":"a"}}\n\n{"id":"2-0","type":\n')
    code, out, err = cli("events", "replay", str(target), "--speed", "max")
    assert code == 1 and out == ""
    assert err.startswith("agentstream: ") and "line 3" in err and err.count("\n") == 1


def test_replay_refuses_an_event_type_that_would_forge_sse_fields(cli, tmp_path: Path) -> None:
    target = tmp_path / "forged.jsonl"
    target.write_text('{"id":"1-0","type":"token\\nevent: done","payload":{}}\n')
    code, _, err = cli("events", "replay", str(target))
    assert code == 1 and "line 1" in err


def test_replay_of_a_missing_file_errors(cli, tmp_path: Path) -> None:
    code, _, err = cli("events", "replay", str(tmp_path / "nope.jsonl"))
    assert code == 1 and "cannot read" in err


@pytest.mark.parametrize("command", [["events", "export"], ["events", "tail"], ["events", "replay"]])
@pytest.mark.parametrize("ident", ["msg_doesnotexist0000", "ses_doesnotexist0000", "xyz"])
def test_unknown_ids_error_in_one_line(cli, command: list[str], ident: str) -> None:
    if command[1] == "replay" and ident == "xyz":
        ident = "msg_" + ident  # anything else is taken for a file name
    code, out, err = cli(*command, ident)
    assert code == 1 and out == ""
    assert err == f"agentstream: no session or message with id {ident}\n"


def test_malformed_since_errors(cli, data: Fixture) -> None:
    code, _, err = cli("events", "export", data.messages[0], "--since", "yesterday")
    assert code == 1 and "malformed event id" in err


def test_no_redis_errors_in_one_line(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTSTREAM_REDIS_URL", f"unix://{tmp_path}/no.sock")
    code, _, err = cli("events", "export", "ses_x")
    assert code == 1 and err.startswith("agentstream: cannot reach Redis") and err.count("\n") == 1


def test_replay_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """Regression: BrokenPipeError is a ConnectionError and was reported as an error."""
    target = tmp_path / "many.jsonl"
    target.write_text('{"id":"1-0","type":"token","payload":{}}\n' * 5000)
    proc = subprocess.run(f"{sys.executable} -m cli.main events replay {target} --speed max | head -1",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "AGENTSTREAM_REDIS_URL": "unix:///nonexistent"})
    assert proc.stdout == "id: 1-0\n" and proc.stderr == ""


def test_no_configured_or_embedded_redis_errors_in_one_line(cli, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("AGENTSTREAM_REDIS_URL")
    monkeypatch.setenv("AGENTSTREAM_DATA_DIR", str(tmp_path))
    code, _, err = cli("sessions", "rebuild", "ses_x")
    assert code == 1 and err.startswith("agentstream: no Redis") and err.count("\n") == 1


def test_bad_speed_is_a_usage_error(cli) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("events", "replay", "x.jsonl", "--speed", "0")
    assert exc.value.code == 2


def test_replay_delays_scale_the_gaps_and_never_go_negative() -> None:
    lines = [event_log.decode_line(f'{{"id":"{i}","type":"token","payload":{{}}}}'.encode())
             for i in ("1000-0", "1500-3", "1200-0", "2200-0")]
    assert event_log.delays_s(lines, 2.0) == [0.0, 0.25, 0.0, 0.5]
    assert event_log.delays_s(lines, None) == [0.0] * 4


def test_progress_bar_clamps_an_estimate_that_was_passed() -> None:
    assert event_log.progress_bar(5, 10, width=10) == "[#####.....]  50% 5/10 events"
    assert event_log.progress_bar(12, 10, width=4) == "[####] 100% 12/12 events"
    assert event_log.progress_bar(0, 0, width=2) == "[##] 100% 0/0 events"


def test_rebuild_reports_match_then_difference_after_corruption(cli, data: Fixture) -> None:
    ses_id = run(data.url, new_session)
    msg_id = run(data.url, lambda r: new_message(r, ses_id, "q"))
    run(data.url, lambda r: finish(r, ses_id, msg_id, "an answer"))
    assert cli("sessions", "rebuild", ses_id) == (0, "projections match the log\n", "")

    run(data.url, lambda r: r.hset(keys.session(ses_id), "total_tokens", 999))
    code, out, _ = cli("sessions", "rebuild", ses_id)
    assert code == 3  # regression (issue 19): a mismatch exits non-zero, so ops scripts can tell
    header, row, note = out.splitlines()
    assert header.split() == ["field", "stored", "recomputed"]
    assert row.split() == ["total_tokens", "999", "2"]
    assert "--write" in note
    assert cli("sessions", "rebuild", ses_id)[1] == out  # read-only by default

    code, out, _ = cli("sessions", "rebuild", ses_id, "--write")
    assert code == 0 and "wrote 1 field" in out
    assert cli("sessions", "rebuild", ses_id)[1] == "projections match the log\n"


def test_rebuild_of_unknown_session_errors(cli) -> None:
    assert cli("sessions", "rebuild", "ses_doesnotexist0000") == (
        1, "", "agentstream: no session with id ses_doesnotexist0000\n")


def test_tail_of_a_finished_message_prints_all_events_and_exits(cli, data: Fixture) -> None:
    for m in data.messages:
        code, out, _ = cli("events", "tail", m)
        assert code == 0
        lines = lines_of(out)
        assert [(ln["type"], ln["payload"]) for ln in lines] == data.appended[m]


def test_tail_of_a_live_message_stops_at_its_terminal_event(cli, data: Fixture) -> None:
    ses_id = run(data.url, new_session)
    msg_id = run(data.url, lambda r: new_message(r, ses_id, "q"))
    appended: list[list[Event]] = []
    writer = threading.Timer(0.3, lambda: appended.append(run(data.url, lambda r: finish(r, ses_id, msg_id, "x y"))))
    writer.start()
    code, out, _ = cli("events", "tail", msg_id)
    writer.join()
    assert code == 0
    assert [(ln["type"], ln["payload"]) for ln in lines_of(out)] == as_pairs(appended[0])


def test_tail_new_prints_only_what_is_appended_from_now_on(cli, data: Fixture) -> None:
    ses_id = run(data.url, new_session)
    msg_id = run(data.url, lambda r: new_message(r, ses_id, "q"))
    run(data.url, lambda r: MessageStore(r, SETTINGS).append(ses_id, msg_id, "*",
                                                             [Thinking(step="processing", message="old news")]))
    appended: list[list[Event]] = []
    writer = threading.Timer(0.5, lambda: appended.append(run(data.url, lambda r: finish(r, ses_id, msg_id, "x y"))))
    writer.start()
    code, out, _ = cli("events", "tail", msg_id, "--new")
    writer.join()
    assert code == 0
    assert [ln["type"] for ln in lines_of(out)] == [type_of(e) for e in appended[0]]  # no history
    assert "old news" not in out


def test_tail_new_and_since_exclude_each_other(cli, data: Fixture) -> None:
    code, _, err = cli("events", "tail", data.messages[0], "--new", "--since", "1-0")
    assert code == 2 and "exclude" in err


def test_tail_of_a_session_follows_new_messages_until_interrupted(data: Fixture) -> None:
    ses_id = run(data.url, new_session)
    first = run(data.url, lambda r: new_message(r, ses_id, "one"))
    run(data.url, lambda r: finish(r, ses_id, first, "a"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")},
           "AGENTSTREAM_REDIS_URL": data.url}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "events", "tail", ses_id], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = [json.loads(proc.stdout.readline()) for _ in range(4)]  # thinking, token, message, done
        assert {ln["message_id"] for ln in seen} == {first}
        second = run(data.url, lambda r: new_message(r, ses_id, "two"))
        run(data.url, lambda r: finish(r, ses_id, second, "b"))
        later = [json.loads(proc.stdout.readline()) for _ in range(4)]
        assert [ln["message_id"] for ln in later] == [second] * 4 and later[-1]["type"] == "done"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
