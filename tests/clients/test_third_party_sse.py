"""SSE clients nobody here wrote, through a proxy that cuts at random byte offsets (inside the
response headers and mid-event too): ``requests-sse`` and ``httpx-sse`` (PyPI) and npm
``eventsource`` follow a message's events URL while it is generated, and dispatch exactly the
stored log: nothing lost, nothing twice, every event's data JSON.

Regression for finding 10 of issue 15: a standalone ``retry:`` block (and a heartbeat comment
followed by a blank line) is a field-less dispatch: ``requests-sse`` then copied the stale id of
an event cut in half into its last event id and skipped that event on the next reconnect, and
``httpx-sse`` handed the application an event with empty data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import requests
from httpx_sse import connect_sse
from requests_sse import EventSource, InvalidContentTypeError

from tests.clients.harness import QUESTIONS, Faulty, stored
from tests.stack import ROOT

pytestmark = pytest.mark.faults
NPM_DIR = Path(__file__).resolve().parent / "npm"
RUNS = 6


def start_messages(faulty: Faulty, tenant, n: int) -> list[tuple[str, str]]:
    """``n`` paced answers, each in its own session so they run at once: (sid, events path)."""
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    out = []
    with httpx.Client(base_url=faulty.direct, headers=headers, timeout=30) as c:
        for i in range(n):
            sid = c.post("/v1/agents/sessions", json={"agent_config": {}}).json()["session_id"]
            with c.stream("POST", f"/v1/agents/sessions/{sid}/messages",
                          json={"content": QUESTIONS[i % len(QUESTIONS)]}) as r:
                assert r.status_code == 200
                out.append((sid, r.headers["content-location"]))  # leaving does not cancel the answer
    return out


def exact(faulty: Faulty, sid: str, path: str, got: list[tuple[str, str]]) -> tuple[int, int]:
    want = [(i, t) for i, t, _ in stored(faulty.stack, sid, path.split("/")[-2])]
    lost = len(set(want) - set(got))
    return lost, len(got) - len(set(got))


def cutting(faulty: Faulty) -> None:
    faulty.proxy.cut_bytes, faulty.proxy.cut_ratio = (1, 1500), 1.0


def test_requests_sse_through_random_cuts_dispatches_the_exact_log(faulty: Faulty, tenant):
    key, ns, _ = tenant
    cutting(faulty)
    lost = dup = reopened = 0
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    for sid, path in start_messages(faulty, tenant, RUNS):
        got: list[tuple[str, str]] = []
        ended = False
        while not ended:
            # requests-sse reconnects by itself after a cut mid-stream. A cut inside the response
            # headers reaches it as a response without Content-Type (http.client takes EOF for
            # the end of the headers), which closes it for good, like a browser's EventSource
            # (issue 15 finding 11): the application reopens it with the last id it dispatched.
            last = got[-1][0] if got else None
            try:
                with EventSource(faulty.proxy.url + path, headers=headers, latest_event_id=last,
                                 reconnection_time=timedelta(milliseconds=20), max_connect_retry=50,
                                 timeout=30) as es:
                    for ev in es:
                        json.loads(ev.data or "")  # every dispatched event is one of ours
                        got.append((ev.last_event_id, ev.type or ""))
                        if ev.type in ("done", "error"):
                            ended = True
                            break
            except (InvalidContentTypeError, requests.RequestException):
                reopened += 1
        a, b = exact(faulty, sid, path, got)
        lost, dup = lost + a, dup + b
    print(f"\nrequests-sse: {RUNS} runs lost={lost} duplicated={dup} reopened={reopened}", faulty.proxy.stats())
    assert (lost, dup) == (0, 0)


def test_httpx_sse_through_random_cuts_sees_only_events_with_data(faulty: Faulty, tenant):
    key, ns, _ = tenant
    cutting(faulty)
    lost = dup = 0
    with httpx.Client(headers={"Authorization": f"Bearer {key}", "X-Namespace": ns}, timeout=30) as c:
        for sid, path in start_messages(faulty, tenant, RUNS):
            got: list[tuple[str, str]] = []
            last: str | None = None
            ended = False
            while not ended:
                try:
                    with connect_sse(c, "GET", faulty.proxy.url + path,
                                     headers={"Last-Event-ID": last} if last else {}) as source:
                        if source.response.status_code == 204:
                            break
                        for e in source.iter_sse():
                            json.loads(e.data)  # no field-less block reaches the application
                            got.append((e.id, e.event))
                            last = e.id or last
                            if e.event in ("done", "error"):
                                ended = True
                                break
                except httpx.TransportError:
                    continue
            a, b = exact(faulty, sid, path, got)
            lost, dup = lost + a, dup + b
    print(f"\nhttpx-sse: {RUNS} runs lost={lost} duplicated={dup}")
    assert (lost, dup) == (0, 0)


def test_npm_eventsource_through_random_cuts_dispatches_the_exact_log(faulty: Faulty, tenant):
    node = shutil.which("node")
    assert node, "node is needed for the npm eventsource test (.ci/run installs nodejs)"
    assert (NPM_DIR / "node_modules" / "eventsource").is_dir(), \
        f"run `npm ci --prefix {NPM_DIR.relative_to(ROOT)}` (.ci/run does) to install npm eventsource"
    key, ns, _ = tenant
    cutting(faulty)
    runs = start_messages(faulty, tenant, RUNS)
    out = subprocess.run([node, str(NPM_DIR / "follow.mjs"), key, ns, *(faulty.proxy.url + p for _, p in runs)],
                         capture_output=True, text=True, timeout=120, cwd=NPM_DIR)
    assert out.returncode == 0, out.stderr
    lost = dup = bad = 0
    for (sid, path), res in zip(runs, json.loads(out.stdout), strict=True):
        assert res["end"] == "terminal", res
        bad += sum(1 for _, _, ok in res["got"] if not ok)
        a, b = exact(faulty, sid, path, [(i, t) for i, t, _ in res["got"]])
        lost, dup = lost + a, dup + b
    print(f"\nnpm eventsource: {RUNS} runs lost={lost} duplicated={dup} bad_data={bad}")
    assert (lost, dup, bad) == (0, 0, 0)


