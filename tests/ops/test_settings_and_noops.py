"""The observability settings, and what happens without them: traces and worker metrics off,
human log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from shared import logs, metrics, tracing
from shared.settings import Settings, SettingsError
from worker import observe


def test_observability_settings_parse_and_fail_naming_the_variable():
    s = Settings.from_env({"AGENTSTREAM_LOG_FORMAT": "json", "AGENTSTREAM_WORKER_METRICS_PORT": "9100",
                           "AGENTSTREAM_OTEL_ENDPOINT": "http://collector:4318"})
    assert (s.log_format, s.worker_metrics_port, s.otel_endpoint) == ("json", 9100, "http://collector:4318")
    assert Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).otel_endpoint == "http://c:4318"
    assert Settings.from_env({}).worker_metrics_port == 0 and Settings.from_env({}).log_format == "human"
    with pytest.raises(SettingsError, match="AGENTSTREAM_LOG_FORMAT"):
        Settings.from_env({"AGENTSTREAM_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="AGENTSTREAM_WORKER_METRICS_PORT"):
        Settings.from_env({"AGENTSTREAM_WORKER_METRICS_PORT": "70000"})


def test_tracing_is_a_no_op_without_an_endpoint():
    assert tracing.setup(None, "agentstream-test") is False
    assert not tracing.enabled() and tracing.traceparent() is None
    with tracing.span("anything", parent="00-" + "1" * 32 + "-" + "2" * 16 + "-01") as s:
        assert s is None


def test_tracing_is_a_no_op_without_the_extra(monkeypatch, caplog):
    for name in [m for m in sys.modules if m.startswith("opentelemetry")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, "agentstream.tracing"):
        assert tracing.setup("http://127.0.0.1:1", "agentstream-test") is False
    assert "otel extra is not installed" in caplog.text
    assert not tracing.enabled()


def test_worker_metrics_port_zero_serves_nothing():
    assert asyncio.run(observe.serve(Settings(worker_metrics_port=0))) is None


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("agentstream.test", logging.INFO, __file__, 1, msg, (), None)


def test_log_lines_carry_the_context_of_their_request_or_job():
    token = logs.start(request_id="req_1", session_id="ses_a")
    try:
        logs.bind(namespace_id="ns_b", message_id=None)  # None: not known, not written
        line = json.loads(logs.JsonFormatter().format(_record("hello")))
        human = logs.HumanFormatter().format(_record("hello"))
    finally:
        logs.reset(token)
    assert {k: line[k] for k in ("level", "logger", "msg", "request_id", "session_id", "namespace_id")} == {
        "level": "info", "logger": "agentstream.test", "msg": "hello", "request_id": "req_1",
        "session_id": "ses_a", "namespace_id": "ns_b"}
    assert "message_id" not in line and line["ts"].endswith("Z")
    assert human.endswith("hello [request_id=req_1 session_id=ses_a namespace_id=ns_b]")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(_record("outside")))


def test_unknown_label_values_fold_into_other():
    assert metrics.bounded("limit", "rate_limited") == "rate_limited"
    assert metrics.bounded("limit", "sk_live_123") == metrics.OTHER
    assert metrics.bounded("route", "/v1/agents/sessions/ses_123") == metrics.OTHER
