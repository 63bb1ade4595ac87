"""The gateway's observability boundary: one ASGI middleware around every request.

Per request: a request id (the caller's ``X-Request-Id`` if it is a sane token, else a new one;
echoed in the response), the log context (request, session and message ids; auth adds the
namespace), a server span (joining the caller's ``traceparent``), the request counter and
latency by route template, and one access line when the response ends.

Per event stream (any ``text/event-stream`` answer): the open-streams gauge, events delivered
(counted from the SSE frames as they pass, so no reader code is touched), the time to the first
event, and for a resume (``Last-Event-ID``) its outcome: exact continuation, a ``reset`` and its
reason, or 204 (nothing left).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import msgspec

from shared import logs, metrics, tracing

access = logging.getLogger("agentstream.access")
METRICS_PATH = "/metrics"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ID = re.compile(r"(ses|msg)_[A-Za-z0-9]{1,60}")
_reset = msgspec.json.Decoder(dict)


def _stream_kind(template: str) -> str:
    return "message" if "/messages" in template else "session"


# Every event frame has exactly one ``event:`` line, and data lines are JSON, which cannot hold
# a raw line break: counting ``event:`` line starts counts events exactly.
_FLUSH_EVERY = 32


def _flush(st: dict[str, Any]) -> None:
    st["delivered"].inc(st["events"] - st["counted"])
    st["counted"] = st["events"]


def _reset_reason(body: bytes) -> str | None:
    """The reason of a ``reset`` if it is the first event in this chunk."""
    at = body.find(b"event: ")
    if at < 0 or not body.startswith(b"event: reset\n", at):
        return None
    line_start = body.find(b"data: ", at)
    line_end = body.find(b"\n", line_start)
    try:
        reason = _reset.decode(body[line_start + 6:line_end]).get("reason", "")
    except msgspec.DecodeError:
        return metrics.OTHER
    return metrics.bounded("reason", str(reason))


class Observe:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        rid = cursor = parent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _REQUEST_ID.fullmatch(text) else None
            elif name == b"last-event-id":
                cursor = value
            elif name == b"traceparent":
                parent = value.decode("latin-1")
        rid = rid or "req_" + os.urandom(8).hex()
        ids: dict[str, str] = {}
        for seg in path.split("/"):
            if _ID.fullmatch(seg):
                ids["session_id" if seg.startswith("ses_") else "message_id"] = seg
        resume = cursor is not None and method == "GET" and path.endswith("/events")
        token = logs.start(request_id=rid, **ids)
        st: dict[str, Any] = {"status": 500, "sse": None, "events": 0, "counted": 0, "first": False}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                st["status"] = status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", rid.encode()))
                sse = False
                for name, value in headers:
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        sse = True
                    elif name == b"x-message-id" and "message_id" not in ids:
                        logs.bind(message_id=value.decode("latin-1"))
                route = _route(scope)
                metrics.REQUEST_SECONDS.labels(metrics.bounded("method", method), route).observe(
                    time.perf_counter() - started)
                if sse and status == 200:
                    st["sse"] = kind = _stream_kind(route)
                    st["delivered"] = metrics.EVENTS_DELIVERED.labels(kind)  # once, not per event
                    metrics.OPEN_STREAMS.labels(kind).inc()
                elif resume and status == 204:
                    metrics.RESUMES.labels("complete_204", "").inc()
            elif st["sse"] is not None:
                # Per event on the hot path: count, and hand the count to Prometheus (a lock)
                # in batches, and whenever the stream goes idle (a heartbeat) or ends.
                body = message.get("body", b"")
                n = body.count(b"\nevent: ") + body.startswith(b"event: ") if body else 0
                if n:
                    st["events"] += n
                    if not st["first"]:
                        st["first"] = True
                        metrics.FIRST_EVENT_SECONDS.labels(st["sse"]).observe(time.perf_counter() - started)
                        if resume:
                            reason = _reset_reason(body)
                            metrics.RESUMES.labels("exact" if reason is None else "reset", reason or "").inc()
                    if st["events"] - st["counted"] >= _FLUSH_EVERY:
                        _flush(st)
                elif st["events"] != st["counted"]:
                    _flush(st)
            await send(message)

        try:
            with tracing.span(f"{method} {path}", parent=parent, kind="server", **{
                    "http.request.method": method, "agentstream.request_id": rid, **ids}) as span:
                app = _metrics if path == METRICS_PATH and method in ("GET", "HEAD") else self.app
                await app(scope, receive, send_wrapper)
                route = _route(scope)
                if span is not None:
                    span.update_name(f"{method} {route}")
                    tracing.set_attributes(span, **{"http.route": route,
                                                    "http.response.status_code": st["status"]})
        finally:
            route = _route(scope)
            status = st["status"]
            if st["sse"] is not None:
                _flush(st)
                metrics.OPEN_STREAMS.labels(st["sse"]).dec()
            if status == 200 and st["sse"] is not None and resume and not st["first"]:
                metrics.RESUMES.labels("exact", "").inc()  # resumed, nothing new before it closed
            metrics.REQUESTS.labels(metrics.bounded("method", method), route, str(status)).inc()
            ms = round((time.perf_counter() - started) * 1000, 1)
            fields: dict[str, Any] = {"method": method, "route": route, "path": path, "status": status,
                                      "duration_ms": ms}
            if st["sse"] is not None:
                fields["events"] = st["events"]
            access.info("%s %s %d %.1fms%s", method, path, status, ms,
                        f" ({st['events']} events)" if st["sse"] is not None else "", extra={"fields": fields})
            logs.reset(token)


def _route(scope: dict[str, Any]) -> str:
    # Starlette's router records the matched route in the scope it was given (ours).
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return METRICS_PATH if scope["path"] == METRICS_PATH else "unmatched"
    return metrics.bounded("route", template)


async def _metrics(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /metrics``, answered here rather than by a route: an operator's endpoint, not part
    of the API (nor of its OpenAPI document); nginx keeps it off the front door."""
    body, content_type = metrics.exposition()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
