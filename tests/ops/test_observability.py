"""Metrics, structured logs and traces of real processes after real traffic.

One stack for the module (a gateway and a worker, JSON logs at info, traces to an OTLP/HTTP
endpoint this test runs, the worker's metrics port on): the traffic runs once, then each test
checks one thing it left behind.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from shared import metrics
from shared.settings import Settings
from tests import sse
from tests.gateway.seed import seed_demo_for
from tests.ops.otlp import Collector
from tests.stack import Proc, Stack, free_port

pytestmark = pytest.mark.integration

SECRET = "zebra-cobalt-4417-secret"  # in message content: must never reach a log line
IDS = re.compile(r"(ses|msg|sk|req)_")


@dataclass
class Observed:
    stack: Stack
    gateway: Proc
    worker: Proc
    worker_metrics: str
    collector: Collector
    key: str
    ns_id: str
    sid: str = ""
    streamed: str = ""  # message id of the streamed answer
    tool_mid: str = ""  # message id of the answer that ran a retriever
    request_ids: list[str] = field(default_factory=list)
    delivered: int = 0  # events the client received on message streams


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    with Collector() as collector:
        port = free_port()
        s = Stack(env={"AGENTSTREAM_LOG_FORMAT": "json", "AGENTSTREAM_LOG_LEVEL": "info",
                       "AGENTSTREAM_OTEL_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
                       "AGENTSTREAM_RATE_LIMIT_PER_MINUTE": "40"})
        s.start_redis()
        worker = s.start_worker(AGENTSTREAM_WORKER_METRICS_PORT=str(port))
        gw = s.start_gateway()
        s.wait_ready(gw)
        key, ns, ns_id = s.new_tenant()
        o = Observed(s, gw, worker, f"http://127.0.0.1:{port}/metrics", collector, key, ns_id)
        try:
            _traffic(o, ns)
            yield o
        finally:
            s.stop()


def _traffic(o: Observed, ns: str) -> None:
    seed_demo_for(o.stack, (o.key, ns, o.ns_id))
    with httpx.Client(base_url=o.gateway.url, timeout=30,
                      headers={"Authorization": f"Bearer {o.key}", "X-Namespace": ns}) as api:
        r = api.post("/v1/agents/sessions", json={"agent_config": {}})
        assert r.status_code == 200, r.text
        o.sid = sid = r.json()["session_id"]
        o.request_ids.append(r.headers["x-request-id"])
        r = api.post(f"/v1/agents/sessions/{sid}/messages", json={"content": f"hello, remember {SECRET}"})
        assert r.status_code == 200
        events = sse.parse(r.text)
        sse.check_stream(events)
        o.streamed = r.headers["x-message-id"]
        o.delivered += len(events)
        r = api.post(f"/v1/agents/sessions/{sid}/messages",
                     json={"content": "find documents about redis cluster hash tags", "stream": False})
        assert r.status_code == 200, r.text
        o.tool_mid = r.json()["message_id"]
        # resumes: from the start (exact), and at the terminal event (204)
        url = f"/v1/agents/sessions/{sid}/messages/{o.streamed}/events"
        r = api.get(url, headers={"Last-Event-ID": events[0].id})
        assert r.status_code == 200 and sse.parse(r.text)[0].type != "reset"
        o.delivered += len(sse.parse(r.text))
        assert api.get(url, headers={"Last-Event-ID": events[-1].id}).status_code == 204
        # a caller's own request id is kept; a malformed one is replaced
        assert api.get(f"/v1/agents/sessions/{sid}", headers={"X-Request-Id": "trace-me-42"}
                       ).headers["x-request-id"] == "trace-me-42"
        assert api.get("/v1/agents/sessions/ses_doesnotexist").status_code == 404
        assert api.get("/nowhere/ses_x1/msg_y2").status_code == 404
    # the per-key rate limit (40 a minute): another key hits it. The limit counts per clock
    # minute, so a run that straddles a minute's end starts a fresh count halfway and may never
    # reach it: such a run is redone with a fresh key.
    for _ in range(3):
        minute = int(time.time() // 60)
        key2, ns2, _ = o.stack.new_tenant()
        with httpx.Client(base_url=o.gateway.url, timeout=30,
                          headers={"Authorization": f"Bearer {key2}", "X-Namespace": ns2}) as other:
            codes = [other.post("/v1/agents/sessions/list", json={}).status_code for _ in range(42)]
        if int(time.time() // 60) == minute:
            break
    assert 429 in codes


def _scrape(url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(r.text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def _total(fams, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return sum(v for n, lab, v in fams[name] if n == name + "_total" or n == name
               if all(lab.get(k) == want for k, want in labels.items()))


def _count(fams, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return sum(v for n, lab, v in fams[name] if n == name + "_count"
               if all(lab.get(k) == want for k, want in labels.items()))


def test_gateway_metrics_show_the_traffic(observed):
    fams = _scrape(observed.gateway.url + "/metrics")
    send = "/v1/agents/sessions/{session_id}/messages"
    assert _total(fams, "agentstream_http_requests", method="POST", route=send, status="200") == 2
    assert _total(fams, "agentstream_http_requests", route="unmatched", status="404") == 1
    assert _total(fams, "agentstream_events_delivered", stream="message") == observed.delivered
    assert _count(fams, "agentstream_time_to_first_event_seconds", stream="message") == 2
    assert _total(fams, "agentstream_resumes", outcome="exact") == 1
    assert _total(fams, "agentstream_resumes", outcome="complete_204") == 1
    assert _total(fams, "agentstream_rate_limited", limit="rate_limited") >= 1
    assert _total(fams, "agentstream_open_event_streams", stream="message") == 0  # all closed again
    assert "agentstream_hub_fallbacks" in fams
    assert _count(fams, "agentstream_http_response_start_seconds", route=send) == 2


def test_worker_metrics_show_the_jobs(observed):
    fams = _scrape(observed.worker_metrics)
    assert _count(fams, "agentstream_job_duration_seconds", outcome="completed") == 2
    assert _total(fams, "agentstream_jobs_running") == 0
    assert _total(fams, "agentstream_attempts", kind="first") == 2
    assert _total(fams, "agentstream_events_appended", type="token") >= 2
    assert _total(fams, "agentstream_events_appended", type="done") == 2
    assert _count(fams, "agentstream_append_seconds") >= 4
    assert _count(fams, "agentstream_provider_seconds", provider="builtin", phase="total") >= 2
    assert _total(fams, "agentstream_provider_tokens", provider="builtin", direction="output") > 0
    for family in ("agentstream_takeovers", "agentstream_fenced_appends", "agentstream_late_lease_renewals",
                   "agentstream_provider_errors", "agentstream_reaper_actions"):
        assert family in fams, family
    assert httpx.get(observed.worker_metrics.replace("/metrics", "/healthz")).status_code == 200


def test_every_label_value_comes_from_a_bounded_set(observed):
    create_app(Settings(), "redis://127.0.0.1:1")  # registers the gateway's route templates here too
    for url in (observed.gateway.url + "/metrics", observed.worker_metrics):
        fams = _scrape(url)
        ours = {n: s for n, s in fams.items() if n.startswith("agentstream_")}
        assert len(ours) >= 20
        for name, samples in ours.items():
            for _, labels, _ in samples:
                for label, value in labels.items():
                    assert not IDS.search(value), (name, label, value)
                    if label != "le":
                        assert value in metrics.LABELS[label], (name, label, value)


def _log_lines(proc: Proc) -> list[dict]:
    assert proc.log is not None
    lines = proc.log.read_text().splitlines()
    assert lines
    out = []
    for line in lines:
        out.append(json.loads(line))  # every line is one JSON object
    return out


def test_logs_are_json_lines_with_context_and_no_secrets(observed):
    gw, wk = _log_lines(observed.gateway), _log_lines(observed.worker)
    for proc in (observed.gateway, observed.worker):
        text = proc.log.read_text()
        assert SECRET not in text and observed.key not in text
        assert "Bearer" not in text and "hash tags" not in text  # no content, no credentials
    access = [x for x in gw if x["logger"] == "agentstream.access"]
    assert len(access) >= 8 + 42  # one line per request
    assert {x["request_id"] for x in access} >= set(observed.request_ids) | {"trace-me-42"}
    send = next(x for x in access if x["method"] == "POST" and x["route"].endswith("/messages")
                and x.get("message_id") == observed.streamed)
    assert send["session_id"] == observed.sid and send["namespace_id"] == observed.ns_id
    assert send["status"] == 200 and send["events"] >= 5
    jobs = [x for x in wk if x["msg"].startswith("message job ended")]
    assert {x["message_id"] for x in jobs} == {observed.streamed, observed.tool_mid}
    assert all(x["attempt"] == 1 and x["session_id"] == observed.sid and x["namespace_id"] == observed.ns_id
               for x in jobs)


def test_one_trace_runs_from_the_post_through_the_worker_steps(observed):
    want = {"intent", "model.step", "tool smart_search", "retriever.execute", "message.run"}
    deadline = time.monotonic() + 30
    while True:
        spans = observed.collector.spans()
        worker = [s for s in spans if s["service"] == "agentstream-worker"
                  and s["attributes"].get("agentstream.message_id", None) is not None
                  and s["attributes"]["agentstream.message_id"].string_value == observed.tool_mid]
        if worker:
            trace = worker[0]["trace_id"]
            names = {s["name"] for s in spans if s["trace_id"] == trace}
            if want <= names:
                break
        assert time.monotonic() < deadline, sorted({s["name"] for s in spans})
        time.sleep(0.2)
    in_trace = [s for s in spans if s["trace_id"] == trace]
    post = [s for s in in_trace if s["service"] == "agentstream-gateway"
            and s["name"] == "POST /v1/agents/sessions/{session_id}/messages"]
    assert len(post) == 1  # the request's own span: the worker's steps hang below it
    by_id = {s["span_id"]: s for s in in_trace}
    run = next(s for s in in_trace if s["name"] == "message.run")
    assert run["parent"] == post[0]["span_id"]
    for s in in_trace:
        if s["name"] in want - {"message.run"}:
            up = s
            while up["parent"] and up["name"] != "message.run":
                up = by_id[up["parent"]]
            assert up is run, s["name"]
    assert {s["service"] for s in in_trace} == {"agentstream-gateway", "agentstream-worker"}
