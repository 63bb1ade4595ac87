"""A real browser resumes a message's events after the server drops the connection mid-answer.

Proof (d) of issue 3: headless Chromium with its native ``EventSource`` (authorised by the stream token
of the send answer in ``?access_token=``, never the API key) follows the resume URL
``GET /v1/agents/sessions/{sid}/messages/{mid}/events``. Between the browser and the gateway sits
a small HTTP proxy (the "server side" as far as the browser can tell): it serves the test page,
forwards the API, and on the first event stream only it cuts the response in the middle of the
answer (after a few tokens, inside the first line of the next event). The browser reconnects by itself after ``retry: 2000``
with ``Last-Event-ID``; the page shows the whole answer exactly once and posts what it saw back
to the proxy at ``/result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import connect, cursor, keys
from shared.events import EVENT_TYPES
from tests.gateway.seed import seed_demo_for
from tests.stack import Proc, Stack, free_port

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("AGENTSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
QUESTION = "find documents about redis streams and consumer groups"
CUT_AFTER_TOKENS = 3  # the first event stream is dropped after this many token events
RESULT_TIMEOUT_S = 40

_EVENT_TYPE = re.compile(rb"(?:^|\n)event: ([^\n]*)\n")
_EVENT_ID = re.compile(rb"(?:^|\n)id: ([^\n]*)\n")


def chromium_binary() -> str:
    """Missing Chromium is a test failure under CI (CI installs it), a skip elsewhere."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found:
        return found
    msg = (f"headless Chromium is needed for the browser resume test and was not found at {CHROMIUM} "
           "or on PATH (Debian: apt-get install -y chromium; .ci/run installs it)")
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def paced() -> Iterator[Stack]:
    """One gateway and one worker whose tokens are paced, so the answer is cut while it streams."""
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "80", "AGENTSTREAM_HEARTBEAT_S": "1"})
    try:
        s.start_redis()
        s.start_worker()
        gw = s.start_gateway()
        s.wait_ready(gw)
        yield s
    finally:
        s.stop()


# --- the proxy ---------------------------------------------------------------------------------


class Proxy:
    """HTTP/1.1, one request per connection (every response says ``Connection: close``).

    ``GET /page.html`` is the test page, ``POST /result`` takes the page's summary, ``/v1/...``
    goes to the gateway. The first ``GET .../events`` response is cut after ``cut_after_tokens``
    token events plus the first bytes of the event that follows; the others pass through.
    """

    def __init__(self, upstream_port: int, page: bytes, cut_after_tokens: int) -> None:
        self.upstream_port = upstream_port
        self.page = page
        self.cut_after_tokens = cut_after_tokens
        self.port = free_port()
        self.streams: list[dict[str, Any]] = []  # one per GET .../events: what it asked, what it got
        self.result: dict[str, Any] | None = None
        self.got_result = threading.Event()
        self.errors: list[str] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="browser-proxy", daemon=True)

    # lifecycle

    def __enter__(self) -> Proxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("proxy did not start")
        if self.errors:
            raise RuntimeError(self.errors[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already gone
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "proxy thread did not stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test, never lost
            self.errors.append(f"proxy crashed: {exc!r}")
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    # one client connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in rest if h)]
            lower = {k.lower(): v for k, v in headers}
            body = await reader.readexactly(int(lower.get("content-length") or 0))
            path = target.split("?", 1)[0]
            if method == "GET" and path == "/page.html":
                await _respond(writer, 200, self.page, "text/html; charset=utf-8")
            elif method == "POST" and path == "/result":
                self.result = json.loads(body)
                self.got_result.set()
                await _respond(writer, 204, b"")
            elif path.startswith("/v1/"):
                await self._forward(method, target, headers, body, reader, writer)
            else:
                await _respond(writer, 404, b"not found\n", "text/plain")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception as exc:
            self.errors.append(f"proxy: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _forward(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                       client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            kept = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive", "host")]
            out = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.upstream_port}",
                   *(f"{k}: {v}" for k, v in kept), "Connection: close", "", ""]
            up_w.write("\r\n".join(out).encode("latin-1") + body)
            await up_w.drain()
            resp_head = await up_r.readuntil(b"\r\n\r\n")
            status_line, *resp_lines = resp_head.decode("latin-1").split("\r\n")
            resp_lines = [h for h in resp_lines if h and not h.lower().startswith(("connection:", "keep-alive:"))]
            client_w.write("\r\n".join([status_line, *resp_lines, "Connection: close", "", ""]).encode("latin-1"))
            stream: dict[str, Any] | None = None
            if method == "GET" and target.split("?", 1)[0].endswith("/events"):
                stream = {"last_event_id": {k.lower(): v for k, v in headers}.get("last-event-id"), "target": target,
                          "status": int(status_line.split(" ")[1]), "ids": [], "types": [], "cut": False}
                self.streams.append(stream)
            pump = self._cut if stream is not None and len(self.streams) == 1 else self._pass
            # The client hanging up (an aborted fetch) ends the exchange as well.
            pumping = asyncio.ensure_future(pump(up_r, client_w, stream))
            hangup = asyncio.ensure_future(client_r.read(1))
            try:
                await asyncio.wait({pumping, hangup}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (pumping, hangup):
                    t.cancel()
                results = await asyncio.gather(pumping, hangup, return_exceptions=True)
            if isinstance(results[0], Exception) and not isinstance(results[0], ConnectionError):
                raise results[0]
        finally:
            up_w.close()
            with contextlib.suppress(Exception):
                await up_w.wait_closed()

    async def _pass(self, up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                    stream: dict[str, Any] | None) -> None:
        buf = b""
        while chunk := await up_r.read(65536):
            client_w.write(chunk)
            if stream is not None:
                stream["reads"] = stream.get("reads", 0) + 1
                buf += chunk
                while (end := buf.find(b"\n\n")) >= 0:
                    _track(stream, buf[:end + 2])
                    buf = buf[end + 2:]
            await client_w.drain()

    async def _cut(self, up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                   stream: dict[str, Any] | None) -> None:
        """Forward whole frames until the Nth token, then a few bytes of the next event, then
        close the connection with the chunked body unfinished: a dropped stream, not an end."""
        assert stream is not None
        buf = b""
        sent = 0
        tokens = 0
        while chunk := await up_r.read(65536):
            buf += chunk
            while tokens < self.cut_after_tokens:
                end = buf.find(b"\n\n", sent)
                if end < 0:
                    break
                frame = buf[sent:end + 2]
                sent = end + 2
                tokens += _track(stream, frame) == "token"
            if tokens < self.cut_after_tokens:
                client_w.write(buf[:sent])
                buf, sent = buf[sent:], 0
                await client_w.drain()
                continue
            nxt = buf.find(b"id: ", sent)
            if nxt < 0:
                continue  # wait for the next event to begin
            client_w.transport.set_write_buffer_limits(0)  # drain() now waits for every byte
            client_w.write(buf[:nxt + 6])  # "id: 17" of the next event: an incomplete frame
            await client_w.drain()
            stream["cut"] = True
            stream["partial"] = buf[nxt:nxt + 6].decode()
            return  # the caller closes both sides
        raise AssertionError("the first event stream ended before the proxy could cut it")


def _track(stream: dict[str, Any], frame: bytes) -> str | None:
    """Note the type and id of one forwarded SSE frame (chunk-size lines may precede it)."""
    kind, eid = _EVENT_TYPE.search(frame), _EVENT_ID.search(frame)
    if kind is None:
        return None  # retry: or a comment
    stream["types"].append(kind.group(1).decode())
    if eid:
        stream["ids"].append(eid.group(1).decode())
    return str(stream["types"][-1])


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str = "") -> None:
    reason = {200: "OK", 204: "No Content", 404: "Not Found"}[status]
    head = [f"HTTP/1.1 {status} {reason}", "Cache-Control: no-store", "Connection: close"]
    if ctype:
        head.append(f"Content-Type: {ctype}")
    if status != 204:
        head.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


# --- the page ----------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>resume</title></head>
<body>
<div id="answer"></div>
<pre id="result"></pre>
<script>
"use strict";
const cfg = __CFG__;
const s = {opens: 0, drops: 0, events: [], tokens: [], message: null, done: 0, server_errors: [],
           ids_at_drop: [], shown: null, message_id: null, timed_out: false, page_error: null};
let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  s.shown = document.getElementById("answer").textContent;
  const text = JSON.stringify(s);
  document.getElementById("result").textContent = text;
  fetch("/result", {method: "POST", body: text, headers: {"Content-Type": "application/json"}});
}
window.addEventListener("error", (e) => { s.page_error = String(e.message); finish(); });
window.addEventListener("unhandledrejection", (e) => { s.page_error = String(e.reason); finish(); });
setTimeout(() => { s.timed_out = true; finish(); }, cfg.page_timeout_ms);

async function main() {
  // Send the message; keep only its id. Dropping the POST's own stream never cancels the run.
  const ctl = new AbortController();
  const r = await fetch(`/v1/agents/sessions/${cfg.sid}/messages`, {
    method: "POST", signal: ctl.signal,
    headers: {"Authorization": `Bearer ${cfg.key}`, "X-Namespace": cfg.ns, "Content-Type": "application/json"},
    body: JSON.stringify({content: cfg.question}),
  });
  const mid = r.headers.get("X-Message-Id");
  // The stream token names this message's stream only: the API key never goes in a URL.
  const token = r.headers.get("X-Stream-Token");
  ctl.abort();
  if (!r.ok || !mid || !token) throw new Error(`send failed: ${r.status}`);
  s.message_id = mid;
  const q = new URLSearchParams({access_token: token});
  const es = new EventSource(`/v1/agents/sessions/${cfg.sid}/messages/${mid}/events?${q}`);
  es.addEventListener("open", () => { s.opens += 1; });
  for (const type of cfg.types) {
    es.addEventListener(type, (e) => {
      if (!(e instanceof MessageEvent)) {  // "error" is also the EventSource's own failure event
        s.drops += 1;
        s.ids_at_drop.push(s.events.length ? s.events[s.events.length - 1].id : null);
        return;
      }
      const data = JSON.parse(e.data);
      s.events.push({type, id: e.lastEventId});
      if (type === "token") {
        s.tokens.push(data.content);
        document.getElementById("answer").append(data.content);
      } else if (type === "message") {
        s.message = data.content;
      } else if (type === "done") {
        s.done += 1;
        es.close();
        finish();
      } else if (type === "error") {
        s.server_errors.push(data);
        es.close();
        finish();
      }
    });
  }
}
main();
</script>
</body></html>
"""


def page_for(cfg: dict[str, Any]) -> bytes:
    return PAGE.replace("__CFG__", json.dumps(cfg)).encode()


# --- chromium ----------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium(binary: str, url: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Headless Chromium on ``url`` in its own process group, which is always killed on exit."""
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--mute-audio",
            "--proxy-server=direct://", "--proxy-bypass-list=*",
            f"--user-data-dir={workdir / 'profile'}", url]
    with (workdir / "chromium.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        yield proc
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    pgid = proc.pid  # start_new_session: the group is Chromium's own, and only its
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
        if not _group_alive(pgid):
            return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    """Any live (not zombie) process left in the group?"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --- the test ----------------------------------------------------------------------------------


def test_browser_eventsource_resumes_after_server_drop(request: pytest.FixtureRequest) -> None:
    binary = chromium_binary()  # before the stack starts
    paced: Stack = request.getfixturevalue("paced")
    gw: Proc = next(p for p in paced.procs if p.kind == "gateway")
    assert gw.port is not None
    tenant = paced.new_tenant()
    seed_demo_for(paced, tenant)
    key, ns, _ = tenant
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns},
                      timeout=30) as client:
        resp = client.post("/v1/agents/sessions", json={"agent_config": {}})
        assert resp.status_code in (200, 201), resp.text
        sid = resp.json()["session_id"]
    cfg = {"sid": sid, "ns": ns, "key": key, "question": QUESTION, "types": sorted(EVENT_TYPES),
           "page_timeout_ms": (RESULT_TIMEOUT_S - 5) * 1000}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="as-chromium-", ignore_cleanup_errors=True) as tmp, \
            Proxy(gw.port, page_for(cfg), CUT_AFTER_TOKENS) as proxy:
        with chromium(binary, proxy.url + "/page.html", Path(tmp)) as browser:
            deadline = time.monotonic() + RESULT_TIMEOUT_S
            while not proxy.got_result.wait(0.2):
                if browser.poll() is not None:
                    log = (Path(tmp) / "chromium.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"chromium exited with {browser.returncode} before the page reported:\n{log}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no result from the page within {RESULT_TIMEOUT_S}s; "
                                f"event streams seen by the proxy: {proxy.streams}; errors: {proxy.errors}")
        elapsed = time.monotonic() - started
    assert not proxy.errors, proxy.errors
    got = proxy.result
    assert got is not None
    assert got["page_error"] is None, got["page_error"]
    assert not got["timed_out"], got
    assert got["server_errors"] == [], got["server_errors"]
    mid = got["message_id"]
    stored = _stored(paced, sid, mid)
    stored_content = next(json.loads(d)["content"] for _, t, d in stored if t == "message")

    # The server side dropped the first stream mid-answer, and the browser came back by itself.
    first, *later = proxy.streams
    assert first["cut"], first
    assert first["last_event_id"] is None
    assert first["types"].count("token") == CUT_AFTER_TOKENS
    cut_id = first["ids"][-1]
    assert got["drops"] >= 1 and got["opens"] >= 2, got
    assert got["ids_at_drop"][0] == cut_id  # the partial event after the cut was not dispatched
    assert len(later) == 1, proxy.streams  # one reconnect, and no more after `done` closed it
    second = later[0]
    assert second["status"] == 200
    assert second["last_event_id"] == cut_id, (second["last_event_id"], cut_id)
    # Both event-stream GETs carried the stream token, never the API key.
    assert all("access_token=ast1." in st["target"] and key not in st["target"] for st in proxy.streams)
    stored_ids = [i for i, _, _ in stored]
    assert stored_ids.index(cut_id) < [t for _, t, _ in stored].index("message"), "cut was not mid-answer"

    # Every event exactly once, in order; the page shows the whole answer once.
    ids = [e["id"] for e in got["events"]]
    parsed = [cursor.parse(i) for i in ids]
    assert all(a < b for a, b in zip(parsed, parsed[1:], strict=False)), ids
    assert [(e["id"], e["type"]) for e in got["events"]] == [(i, t) for i, t, _ in stored]
    assert first["ids"] + second["ids"] == ids
    assert got["done"] == 1 and got["events"][-1]["type"] == "done"
    answer = "".join(got["tokens"])
    assert answer == got["message"] == stored_content
    assert got["shown"] == stored_content
    print(f"\nbrowser resume: {len(ids)} events ({len(got['tokens'])} tokens); first stream cut after "
          f"{len(first['ids'])} events at {cut_id} (+{first['partial']!r}); reconnect sent Last-Event-ID "
          f"{second['last_event_id']} and got {len(second['ids'])} events in {second.get('reads')} reads; "
          f"opens={got['opens']}; {elapsed:.1f}s with the browser")


def _stored(s: Stack, sid: str, mid: str) -> list[tuple[str, str, bytes]]:
    async def go() -> list[tuple[str, str, bytes]]:
        redis = connect.client(s.redis_url)
        try:
            rows = await redis.xrange(keys.events(sid, mid))
            return [(i.decode(), f[b"t"].decode(), f[b"d"]) for i, f in rows]
        finally:
            await redis.aclose()

    return asyncio.run(go())
