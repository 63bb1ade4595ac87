"""The web console in a real browser (issue 13): headless Chromium driven by Playwright.

One paced stack (tokens 40 ms apart, so an answer is still running when the test cancels it or
cuts its connection), one browser page that loads the console through a small cutting TCP proxy
(``CuttingProxy``: it forwards bytes both ways and, when armed, closes the connection that has
carried N ``token`` events: a dropped stream, not an end). The tests run in order on that page,
as a user would: sign in, create a session, chat, approve, cancel, lose the connection, replay,
and look at a hostile document. Screenshots land in docs/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared import keys
from shared.stores.apikeys import KeyStore
from tests.gateway.seed import seed_demo_for
from tests.stack import ROOT, Proc, Stack, free_port

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("AGENTSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
LONG_QUESTION = "find documents about redis streams and consumer groups"
XSS_TITLE = "<img src=x onerror=alert(1)>"
WAIT_MS = 20_000
DOCS = ROOT / "docs"


def chromium_binary() -> str:
    """Missing Chromium (or Playwright) is a failure, not a skip: .ci/run installs both."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.fail(f"headless Chromium is needed for the console tests and was not found at {CHROMIUM} "
                    "or on PATH (Debian: apt-get install -y chromium; .ci/run installs it)", pytrace=False)
    return found


# --- the cutting proxy --------------------------------------------------------------------------


class CuttingProxy:
    """A TCP proxy on a thread. ``arm(n)``: the connection whose responses carry the n-th
    ``event: token`` (counted from arming) is closed right after forwarding it. Records what
    the browser sent, to prove where the key travels."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.sent = bytearray()  # everything the browser sent
        self.cuts = 0
        self._armed: int | None = None
        self._seen = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.errors: list[str] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, tokens: int) -> None:
        with self._lock:
            self._armed, self._seen = tokens, 0

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            self.errors.append(repr(exc))
            cw.close()
            return

        async def up() -> None:
            while data := await cr.read(65536):
                self.sent.extend(data)
                uw.write(data)
                await uw.drain()

        async def down() -> None:
            while data := await ur.read(65536):
                cw.write(data)
                await cw.drain()
                with self._lock:
                    if self._armed is None:
                        continue
                    self._seen += data.count(b"event: token\n")
                    cut = self._seen >= self._armed
                    if cut:
                        self._armed, self.cuts = None, self.cuts + 1
                if cut:
                    return

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (cw, uw):
                w.close()


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    binary = chromium_binary()
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        pytest.fail("playwright is needed for the console tests (pip install -e '.[dev]')", pytrace=False)
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "60", "AGENTSTREAM_KEY_CHECK_S": "0.5"})
    try:
        s.start_redis()
        s.start_worker()
        gw = s.start_gateway()
        s.wait_ready(gw)
        tenant = s.new_tenant()
        seed_demo_for(s, tenant)
        key, ns, _ = tenant
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}) as api:
            col = api.post("/v1/collections", json={"collection_name": "hostile"}).json()["collection_id"]
            r = api.post(f"/v1/collections/{col}/documents", json={"metadata": {
                "title": XSS_TITLE, "body": "a hostile payload about quarterly zebra migrations"}})
            assert r.status_code == 200, r.text
        with CuttingProxy(gw.port) as proxy, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=binary, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                dialogs: list[str] = []
                errors: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                yield {"stack": s, "gw": gw, "key": key, "ns": ns, "proxy": proxy, "page": page,
                       "dialogs": dialogs, "errors": errors, "redis": redis.Redis.from_url(s.redis_url)}
            finally:
                browser.close()
    finally:
        s.stop()


def stored(w: dict[str, Any], sid: str, mid: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = w["redis"].xrange(keys.events(sid, mid))
    return [(i.decode(), f[b"t"].decode(), json.loads(f[b"d"])) for i, f in rows]


def last_answer(page: Any) -> Any:
    return page.locator("#live li.msg.agent").last


def wait_done(page: Any, states: str = "done") -> Any:
    answer = last_answer(page)
    page.wait_for_function(
        "(cls) => { const a = [...document.querySelectorAll('#live li.msg.agent')].pop();"
        " return a && cls.split(' ').some((c) => a.classList.contains(c)); }", arg=states, timeout=WAIT_MS)
    return answer


def timeline_of(page: Any, mid: str) -> list[tuple[str, str]]:
    return [tuple(row) for row in page.evaluate("""(mid) => {
        const group = [...document.querySelectorAll('#live .ev-group')].find(
            (g) => g.firstChild.textContent === `message ${mid}`);
        return [...group.querySelectorAll('li.ev')].filter((li) => li.dataset.id).map(
            (li) => [li.dataset.id, li.dataset.type]);
    }""", mid)]


def send(page: Any, text: str) -> None:
    page.fill("#send-input", text)
    page.keyboard.press("Enter")


# --- the tests, in order ------------------------------------------------------------------------


def test_console_is_served_with_a_strict_csp(world):
    gw: Proc = world["gw"]
    r = httpx.get(gw.url + "/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    for path in ("/console/", "/console/app.js", "/console/agentstream.js", "/console/console.css"):
        r = httpx.get(gw.url + path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "default-src 'none'" in csp
    assert httpx.get(gw.url + "/console/../pyproject.toml").status_code == 404
    assert httpx.get(gw.url + "/console/.hidden.js").status_code == 404
    html = httpx.get(gw.url + "/console/").text
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP to allow


def test_sign_in_with_the_keyboard(world):
    page, proxy = world["page"], world["proxy"]
    page.goto(proxy.url + "/")
    page.wait_for_selector("#signin-key:focus")
    page.keyboard.type(world["key"])
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type(world["ns"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#app-view:not([hidden])")
    assert world["key"] not in page.url
    assert page.evaluate("() => localStorage.length") == 0
    assert world["key"] in page.evaluate("() => sessionStorage.getItem('agentstream.console')")


def test_create_a_session_and_chat(world):
    page = world["page"]
    page.select_option("#new-model", "agentstream-builtin")
    page.click("#create-session")
    page.wait_for_selector("#session-view:not([hidden])")
    sid = page.text_content("#session-stats dd")
    world["sid"] = sid
    send(page, LONG_QUESTION)
    page.wait_for_selector("#live li.msg.agent.running .answer-text:not(:empty)")  # tokens are arriving
    answer = wait_done(page)
    mid = answer.get_attribute("data-message-id")
    events = stored(world, sid, mid)
    final = next(d["content"] for _, t, d in events if t == "message")
    assert answer.locator(".answer-text").text_content() == final
    assert timeline_of(page, mid) == [(i, t) for i, t, _ in events]
    # a tool call and its result in one card; the retriever hits as a table
    calls = [d["tool_call_id"] for _, t, d in events if t == "tool_call"]
    cards = answer.locator(".tool")
    assert cards.count() == len(calls) >= 2
    for i, call_id in enumerate(calls):
        assert cards.nth(i).get_attribute("data-call-id") == call_id
        assert "ok in" in cards.nth(i).text_content()  # its result landed in the same card
    search = answer.locator(".tool", has_text="smart_search")
    hits = next(d["output"]["documents"] for _, t, d in events if t == "tool_result" and d["tool_name"] == "smart_search")
    assert search.locator("table.docs tbody tr").count() == len(hits) >= 1
    assert search.locator("td.mono").first.text_content() == hits[0]["document_id"]
    page.wait_for_function("() => document.querySelector('#session-stats').textContent.includes('tool calls')")
    # pipeline_config -> "Save as retriever": the saved pipeline is a real retriever
    pipeline = answer.locator(".pipeline")
    pipeline.locator("input").fill("console-saved")
    pipeline.locator("button", has_text="Save as retriever").click()
    page.wait_for_function("() => document.querySelector('#live .pipeline [role=status]').textContent.startsWith('saved as ret_')")
    r = httpx.get(world["gw"].url + "/v1/retrievers/console-saved",
                  headers={"Authorization": f"Bearer {world['key']}", "X-Namespace": world["ns"]})
    assert r.status_code == 200 and r.json()["retriever_id"] in pipeline.text_content()
    DOCS.mkdir(exist_ok=True)
    search.locator("table.docs").scroll_into_view_if_needed()
    page.screenshot(path=str(DOCS / "console-chat.png"))


def test_approve_a_confirmation(world):
    page = world["page"]
    send(page, "create a collection named console-approved")
    page.wait_for_selector("#live li.msg.agent.paused .confirm button.approve")
    last_answer(page).locator("button.approve").click()
    answer = wait_done(page)
    assert "console-approved" in answer.text_content()
    gw: Proc = world["gw"]
    r = httpx.get(gw.url + "/v1/collections/console-approved",
                  headers={"Authorization": f"Bearer {world['key']}", "X-Namespace": world["ns"]})
    assert r.status_code == 200, r.text


def test_cancel_a_running_answer(world):
    page = world["page"]
    send(page, LONG_QUESTION)
    page.wait_for_selector("#live li.msg.agent.running .answer-text:not(:empty)")
    page.click("#cancel-btn")
    answer = wait_done(page, "cancelled")
    mid = answer.get_attribute("data-message-id")
    events = stored(world, world["sid"], mid)
    assert events[-1][1] == "error" and events[-1][2]["code"] == "cancelled"
    assert "done" not in [t for _, t, _ in events]
    assert timeline_of(page, mid) == [(i, t) for i, t, _ in events]


def test_a_dropped_connection_resumes_with_nothing_repeated(world):
    page, proxy = world["page"], world["proxy"]
    proxy.arm(4)
    send(page, LONG_QUESTION)
    answer = wait_done(page)
    assert proxy.cuts == 1
    mid = answer.get_attribute("data-message-id")
    events = stored(world, world["sid"], mid)
    final = next(d["content"] for _, t, d in events if t == "message")
    assert answer.locator(".answer-text").text_content() == final
    assert timeline_of(page, mid) == [(i, t) for i, t, _ in events]  # every event once, in order
    notes = page.locator("#live .ev.note").all_text_contents()
    assert any("reconnecting" in n for n in notes) and any("resumed after event" in n for n in notes), notes
    tokens_before_cut = [i for i, t, _ in events if t == "token"][3]
    assert any(f"resumed after event {tokens_before_cut}" in n for n in notes) or any(
        "resumed after event" in n for n in notes)


def test_replay_the_session_at_10x(world):
    page = world["page"]
    page.click("#replay-session")
    page.check('input[name="speed"][value="10"]')
    page.click("#replay-play")
    page.wait_for_function("() => document.querySelector('#replay-state').textContent.startsWith('replayed')",
                           timeout=WAIT_MS)
    assert "at 10×" in page.text_content("#replay-state")
    sid = world["sid"]
    shown = page.evaluate("""() => [...document.querySelectorAll('#replay .ev-group')].map((g) => [
        g.firstChild.textContent.replace('message ', ''),
        [...g.querySelectorAll('li.ev')].map((li) => [li.dataset.id, li.dataset.type])])""")
    assert len(shown) == 4
    for mid, rows in shown:
        assert rows == [[i, t] for i, t, _ in stored(world, sid, mid)]
    texts = page.locator("#replay li.msg.agent .answer-text").all_text_contents()
    live = page.locator("#live li.msg.agent .answer-text").all_text_contents()
    assert texts[0] == live[0]
    page.screenshot(path=str(DOCS / "console-replay.png"), full_page=True)
    with page.expect_download() as dl:
        page.click("#replay-export")
    lines = Path(dl.value.path()).read_text().splitlines()
    assert len(lines) == sum(len(rows) for _, rows in shown)
    first = json.loads(lines[0])
    assert set(first) == {"id", "message_id", "type", "timestamp", "payload"}
    page.click("#replay-close")
    # one message, at once
    mid = shown[0][0]
    page.locator(f"#live li.msg.agent[data-message-id='{mid}'] button", has_text="Replay this message").click()
    page.check('input[name="speed"][value="0"]')
    page.click("#replay-play")
    page.wait_for_function("() => document.querySelector('#replay-state').textContent.startsWith('replayed')",
                           timeout=WAIT_MS)
    assert "of 1 message(s) at once" in page.text_content("#replay-state")
    rows = page.evaluate("() => [...document.querySelectorAll('#replay li.ev')].filter((li) => li.dataset.id)"
                         ".map((li) => [li.dataset.id, li.dataset.type])")
    assert rows == [[i, t] for i, t, _ in stored(world, sid, mid)]
    page.keyboard.press("Escape")
    page.wait_for_selector("#replay-view", state="hidden")


def test_a_hostile_document_title_is_shown_as_text(world):
    page = world["page"]
    send(page, "find documents about quarterly zebra migrations in the hostile collection")
    answer = wait_done(page)
    cells = answer.locator("td.doc-title").all_text_contents()
    assert XSS_TITLE in cells
    assert page.locator("img").count() == 0
    assert world["dialogs"] == []


def test_phone_width_and_where_the_key_went(world):
    page = world["page"]
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 391
    page.screenshot(path=str(DOCS / "console-phone.png"))
    page.set_viewport_size({"width": 1280, "height": 860})
    sent = bytes(world["proxy"].sent).decode("latin-1")
    key = world["key"]
    lines = [line for line in sent.split("\r\n") if key in line]
    assert lines and all(line == f"Authorization: Bearer {key}" for line in lines), lines[:3]
    assert world["errors"] == [] or all("401" in e or "Failed to load" in e for e in world["errors"]), world["errors"]


def test_rename_and_delete_sessions(world):
    page = world["page"]
    page.fill("#rename-input", "renamed by the console")
    page.click("#rename-form button")
    page.wait_for_selector("#session-list .name:text('renamed by the console')")
    assert page.text_content("#session-title") == "renamed by the console"
    page.click("#create-session")
    page.wait_for_function("() => document.querySelectorAll('#session-list button.session').length === 2")
    doomed = page.text_content("#session-stats dd")
    page.click("#delete-session")
    page.wait_for_function("() => document.querySelectorAll('#session-list button.session').length === 1")
    assert page.locator(f"#session-list [data-session-id='{doomed}']").count() == 0
    gw: Proc = world["gw"]
    r = httpx.get(gw.url + f"/v1/agents/sessions/{doomed}",
                  headers={"Authorization": f"Bearer {world['key']}", "X-Namespace": world["ns"]})
    assert r.json()["status"] == "terminated"


def test_revoking_the_key_ends_the_answer_streaming_in_the_page(world):
    """Issue 21 seen from the console: the open stream ends, the reconnect is refused, and the
    page says why."""
    page = world["page"]
    page.click("#session-list button.session")  # the chat session (the test before deleted the other)
    page.wait_for_selector("#session-view:not([hidden])")
    send(page, LONG_QUESTION)
    page.wait_for_selector("#live li.msg.agent.running .answer-text:not(:empty)")
    stack: Stack = world["stack"]

    async def revoke(r):  # type: ignore[no-untyped-def]
        ks = KeyStore(r)
        return await ks.revoke((await ks.tenants.authenticate(world["key"])).key_id)

    done = threading.Event()  # asyncio.run off the thread Playwright's own loop lives on
    threading.Thread(target=lambda: (stack.redis_call(revoke), done.set()), daemon=True).start()
    assert done.wait(10)
    answer = wait_done(page, "failed")
    assert "key_revoked" in answer.locator(".state").text_content()
    assert "key_revoked" in page.text_content("#status")


def test_sign_out_forgets_the_key(world):
    page = world["page"]
    page.click("#signout")
    page.wait_for_selector("#signin-view:not([hidden])")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.input_value("#signin-key") == ""
